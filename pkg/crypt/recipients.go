package crypt

import (
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stepseal/stepseal/pkg/policy"
)

// Recipient is one recipient entry of one encrypted layer, as far as it can
// be identified without a private key.
//
// A JWE recipient entry names its key only through the optional "kid"
// header; EncryptFor sets it to the platform key's policy.Fingerprint (go-jose
// copies the JWK's key ID there, and ocicrypt passes JWKs through). Anyone
// who encrypts can write any kid, so the kid is a claim: what the entry
// itself proves is its algorithm and key shape (RSA modulus size from the
// wrapped key's length, EC curve from the ephemeral key). CheckRecipients
// checks count, kids and shapes; Decrypt checks, for its own key, that the
// entry labeled with it is the one that opens; the publisher's signature
// over the manifest binds the rest.
type Recipient struct {
	Layer       int     `json:"layer"`
	LayerDigest v1.Hash `json:"layerDigest"`
	// Scheme is the ocicrypt key wrapper: "jwe", or another one ("pgp",
	// "pkcs7", "pkcs11", "provider.*") stepseal never uses.
	Scheme string `json:"scheme"`
	// KeyID is the JWE "kid" header ("" when absent).
	KeyID string `json:"keyID"`
	// Algorithm is the JWE key management algorithm ("RSA-OAEP-256",
	// "ECDH-ES+A256KW", ...).
	Algorithm string `json:"algorithm,omitempty"`
	// Shape is what the entry reveals about its key: "RSA-2048",
	// "EC-P-256", or "" when nothing.
	Shape string `json:"shape,omitempty"`
	// Platform is the policy platform whose key this is (NamePlatforms):
	// its fingerprint is KeyID and its key has Shape. Empty when unknown.
	Platform string `json:"platform,omitempty"`
	// Mislabeled is the platform a recipient's KeyID claims although its
	// shape is not that platform's key (NamePlatforms).
	Mislabeled string `json:"mislabeled,omitempty"`
}

// CanDecrypt lists, in policy order, the platforms NamePlatforms found to
// be recipients of every encrypted layer of rs: those that can decrypt the
// whole artifact.
func CanDecrypt(rs []Recipient, pol *policy.Policy) []string {
	layers := map[int]bool{}
	per := map[string]map[int]bool{}
	for _, r := range rs {
		layers[r.Layer] = true
		if r.Platform != "" {
			if per[r.Platform] == nil {
				per[r.Platform] = map[int]bool{}
			}
			per[r.Platform][r.Layer] = true
		}
	}
	var out []string
	for _, p := range pol.Platforms {
		if len(layers) > 0 && len(per[p.Name]) == len(layers) {
			out = append(out, p.Name)
		}
	}
	return out
}

// NamePlatforms returns rs with Platform set to the name of the platform of
// pol (any platform, not only those of a rule) whose key each recipient is:
// KeyID is the platform key's fingerprint and Shape its shape. A KeyID of a
// platform with another shape is a relabeled recipient: Mislabeled names
// the platform claimed, Platform stays empty.
func NamePlatforms(rs []Recipient, pol *policy.Policy) []Recipient {
	byFP := map[string]policy.Platform{}
	for _, p := range pol.Platforms {
		byFP[p.Fingerprint] = p
	}
	out := make([]Recipient, len(rs))
	for i, r := range rs {
		out[i] = r
		p, ok := byFP[r.KeyID]
		switch {
		case r.Scheme != "jwe" || r.KeyID == "" || !ok:
		case r.Shape != policy.KeyShape(p.PublicKey):
			out[i].Mislabeled = p.Name
		default:
			out[i].Platform = p.Name
		}
	}
	return out
}

// Who says whose key r is: "platform NAME", or "unknown key ID" (also for
// a mislabeled recipient, with the platform it claims), or "unidentified
// recipient" without a key ID; then the entry's scheme, algorithm and
// shape in parentheses.
func (r Recipient) Who() string {
	var who string
	switch {
	case r.Platform != "":
		who = "platform " + r.Platform
	case r.KeyID == "":
		who = "unidentified recipient"
	case r.Mislabeled != "":
		who = fmt.Sprintf("unknown key %s (labeled platform %q, whose key is not of this shape)", r.KeyID, r.Mislabeled)
	default:
		who = "unknown key " + r.KeyID
	}
	parts := r.details()
	if len(parts) == 0 {
		return who
	}
	return who + " (" + strings.Join(parts, " ") + ")"
}

// details are the scheme (other than JWE), algorithm and key shape of r,
// those known.
func (r Recipient) details() []string {
	var parts []string
	if r.Scheme != "jwe" {
		parts = append(parts, "scheme "+r.Scheme)
	}
	if r.Algorithm != "" {
		parts = append(parts, r.Algorithm)
	}
	if r.Shape != "" {
		parts = append(parts, r.Shape)
	}
	return parts
}

func (r Recipient) String() string {
	id := r.KeyID
	if id == "" {
		id = "unidentified"
	}
	return strings.Join(append([]string{id}, r.details()...), " ")
}

// Recipients lists the recipient entries of every encrypted layer of img
// from ocicrypt's annotations. A plaintext image has none.
func Recipients(img v1.Image) ([]Recipient, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out []Recipient
	for i, d := range m.Layers {
		rs, err := layerRecipients(i, d)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func layerRecipients(i int, d v1.Descriptor) ([]Recipient, error) {
	var out []Recipient
	keys := make([]string, 0, len(d.Annotations))
	for k := range d.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, annotationKeys) {
			continue
		}
		scheme := strings.TrimPrefix(k, annotationKeys)
		if scheme != "jwe" {
			// Another key wrapper: every comma-separated entry is a
			// recipient stepseal cannot identify.
			for range strings.Split(d.Annotations[k], ",") {
				out = append(out, Recipient{Layer: i, LayerDigest: d.Digest, Scheme: scheme})
			}
			continue
		}
		slots, err := jweSlots(d.Annotations[k])
		if err != nil {
			return nil, fmt.Errorf("%w: layer %d (%s): %w", ErrRecipients, i, d.Digest, err)
		}
		for _, s := range slots {
			out = append(out, Recipient{Layer: i, LayerDigest: d.Digest, Scheme: "jwe", KeyID: s.kid, Algorithm: s.alg, Shape: s.shape})
		}
	}
	return out, nil
}

// CheckRecipients checks that every layer of img is encrypted to exactly the
// platforms pol's rule for ref names: no layer in the clear when the rule
// says encrypt, no recipient the rule does not name (an extra, unidentified,
// duplicated or mislabeled entry is an attack: someone wants to decrypt who
// must not), none missing. It returns policy.ErrNoRule when no rule covers
// ref, ErrNotEncrypted, or a *RecipientsError (errors.Is ErrRecipients).
func CheckRecipients(img v1.Image, pol *policy.Policy, ref string) error {
	rule, err := pol.Rule(ref)
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	for i, d := range m.Layers {
		if !isEncrypted(d.MediaType) {
			if rule.Encrypt {
				return fmt.Errorf("%w: %s layer %d (%s, %s): policy %q rule %q requires encryption", ErrNotEncrypted, ref, i, d.Digest, d.MediaType, pol.Name, rule.Match)
			}
			continue
		}
		rs, err := layerRecipients(i, d)
		if err != nil {
			return err
		}
		if e := compare(ref, i, d.Digest, rs, rule); e != nil {
			return e
		}
	}
	return nil
}

func compare(ref string, layer int, blob v1.Hash, rs []Recipient, rule policy.Rule) error {
	want := map[string]policy.Platform{}
	for _, p := range rule.Platforms {
		want[p.Fingerprint] = p
	}
	seen := map[string]bool{}
	e := &RecipientsError{Ref: ref, Layer: layer, Blob: blob.String()}
	for _, r := range rs {
		p, named := want[r.KeyID]
		switch {
		case r.Scheme != "jwe":
			e.Extra = append(e.Extra, fmt.Sprintf("a %s recipient (stepseal wraps keys with JWE only)", r.Scheme))
		case r.KeyID == "":
			e.Extra = append(e.Extra, "unidentified recipient ("+r.String()+")")
		case !named:
			e.Extra = append(e.Extra, "recipient "+r.String()+" is no platform of the rule")
		case seen[r.KeyID]:
			e.Extra = append(e.Extra, fmt.Sprintf("second recipient labeled platform %q (%s)", p.Name, r.String()))
		case r.Shape != policy.KeyShape(p.PublicKey):
			e.Extra = append(e.Extra, fmt.Sprintf("recipient labeled platform %q is %s %s but that platform's key is %s: relabeled recipient", p.Name, r.Algorithm, orUnknown(r.Shape), policy.KeyShape(p.PublicKey)))
		default:
			seen[r.KeyID] = true
		}
	}
	for _, p := range rule.Platforms {
		if !seen[p.Fingerprint] {
			e.Missing = append(e.Missing, fmt.Sprintf("%s (%s)", p.Name, p.Fingerprint))
		}
	}
	if len(e.Extra) > 0 || len(e.Missing) > 0 {
		return e
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "of unknown shape"
	}
	return s
}

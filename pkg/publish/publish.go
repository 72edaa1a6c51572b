package publish

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
)

// Attestation is a signed DSSE envelope (an in-toto statement) to attach,
// and the name errors and results give it (its file).
type Attestation struct {
	Source   string
	Envelope *dsse.Envelope
}

// Options of Publish.
type Options struct {
	// Policy decides whether and to whom the artifact is encrypted.
	// Required.
	Policy *policy.Policy
	// Key signs the image (cosign format) and the attestations re-issued
	// for it. Required: *ecdsa.PrivateKey, *rsa.PrivateKey or
	// ed25519.PrivateKey.
	Key crypto.Signer
	// Attestations to attach. Each must be signed by one of AttestKeys and
	// be about the artifact (see Publish).
	Attestations []Attestation
	// AttestKeys are the keys an attestation may be signed with; default
	// the public key of Key.
	AttestKeys []oci.StatementKey
}

// Result is what Publish published.
type Result struct {
	// Ref is the reference asked for, Digest where the image now is.
	Ref    name.Reference
	Digest name.Digest
	// Encrypted says whether the image is encrypted; Platforms are the
	// platforms that can decrypt it (none for a public artifact), Rule the
	// pattern of the policy rule that decided.
	Encrypted bool
	Platforms []string
	Rule      string
	// Attested are the attached attestations, in the order given.
	Attested []Attested
}

// Reissued counts the attestations re-issued for the image.
func (r *Result) Reissued() int {
	n := 0
	for _, a := range r.Attested {
		if a.Reissued {
			n++
		}
	}
	return n
}

// Attested is one attestation Publish verified and attached.
type Attested struct {
	// Source is Attestation.Source.
	Source        string
	PredicateType string
	// KeyName is the StatementKey.Name of the key that verified it, KeyID
	// its in-toto key ID.
	KeyName, KeyID string
	// Subject is the artifact digest the statement names.
	Subject v1.Hash
	// Reissued: attached re-issued for the image, signed by Options.Key,
	// the original envelope carried in the image subject's annotations
	// (oci.Reissue).
	Reissued bool
}

// Publish pushes img to ref, following these steps in order:
//
//  1. Every attestation is verified before anything is pushed: signed by
//     one of Options.AttestKeys, an in-toto statement, and one of its
//     subjects is the artifact as given (oci.ArtifactDigests: its manifest
//     digest before encryption, a file's sha256, a directory's tar
//     digest). A forged or unrelated attestation is refused here
//     (oci.ErrSignature, oci.ErrDigestMismatch) and nothing is pushed.
//  2. The policy's rule for ref's repository decides: no rule is
//     policy.ErrNoRule (refused); a rule with encrypt encrypts every layer
//     to exactly its platforms.
//  3. An attestation that does not name the published image (an encrypted
//     image's digest exists only now) is re-issued for it, signed by
//     Options.Key, with the original envelope inside (oci.Reissue): the
//     publisher vouches only for statements whose signature verified.
//  4. The image is pushed by digest, signed, the attestations attached,
//     and only then is the tag moved: nothing unsigned is ever tagged. A
//     failure at any point of this step leaves the tag as it was.
func Publish(ctx context.Context, c *oci.Client, img v1.Image, ref name.Reference, opts Options) (*Result, error) {
	if opts.Policy == nil || opts.Key == nil {
		return nil, errors.New("publish: a policy and a signing key are required")
	}
	attKeys := opts.AttestKeys
	if len(attKeys) == 0 {
		attKeys = []oci.StatementKey{{Name: "the public key of the signing key", Public: opts.Key.Public()}}
	}
	// 1.
	verified, err := verifyAttestations(ctx, img, opts.Attestations, attKeys)
	if err != nil {
		return nil, err
	}
	// 2.
	img, r, err := encryptForPolicy(ctx, img, ref, opts.Policy)
	if err != nil {
		return nil, err
	}
	// 3.
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if want, ok := ref.(name.Digest); ok && want.DigestStr() != d.String() {
		// A reference by digest promises that digest: pushing another
		// under it would answer with a digest the caller did not ask for.
		return nil, fmt.Errorf("%w: %s names %s, but the artifact to publish is %s (an encrypted image's digest is known only when it is published: publish to a tag)", oci.ErrDigestMismatch, ref, want.DigestStr(), d)
	}
	target := ref.Context().Digest(d.String())
	envs := make([]*dsse.Envelope, len(verified))
	for i, vs := range verified {
		a := Attested{Source: vs.Source, PredicateType: vs.PredicateType, KeyName: vs.KeyName, KeyID: vs.KeyID, Subject: vs.Subject}
		envs[i] = vs.Envelope
		if !statementNames(vs.Envelope, d.Hex) {
			if envs[i], err = oci.Reissue(ctx, vs, target, opts.Key); err != nil {
				return nil, fmt.Errorf("attestation %s: %w", vs.Source, err)
			}
			a.Reissued = true
		}
		r.Attested = append(r.Attested, a)
	}
	// 4.
	if r.Digest, err = pushSigned(ctx, c, img, ref, opts.Key, envs); err != nil {
		return nil, err
	}
	return r, nil
}

// Covered refuses, as Publish would at its step 2, a ref whose repository
// no rule of pol covers (policy.ErrNoRule): a caller checks it before it
// reads or decrypts a signing key or an artifact, so a refused publish
// touches neither.
func Covered(pol *policy.Policy, ref name.Reference) error {
	_, err := pol.Rule(ref.Context().Name())
	return err
}

// verifyAttestations is step 1 of Publish.
func verifyAttestations(ctx context.Context, img v1.Image, atts []Attestation, keys []oci.StatementKey) ([]*oci.VerifiedStatement, error) {
	if len(atts) == 0 {
		return nil, nil
	}
	digests, err := oci.ArtifactDigests(img)
	if err != nil {
		return nil, err
	}
	out := make([]*oci.VerifiedStatement, len(atts))
	for i, a := range atts {
		if out[i], err = oci.VerifyStatement(ctx, a.Source, a.Envelope, keys, digests); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// encryptForPolicy is step 2 of Publish: refuse when no rule covers ref's
// repository, encrypt to exactly the rule's platforms when it says so.
func encryptForPolicy(ctx context.Context, img v1.Image, ref name.Reference, pol *policy.Policy) (v1.Image, *Result, error) {
	repo := ref.Context().Name()
	rule, err := pol.Rule(repo)
	if err != nil {
		return nil, nil, err
	}
	r := &Result{Ref: ref, Encrypted: rule.Encrypt, Rule: rule.Match, Platforms: platformNames(rule)}
	if rule.Encrypt {
		if img, err = crypt.EncryptFor(ctx, pol, repo, img); err != nil {
			return nil, nil, err
		}
	}
	return img, r, nil
}

func platformNames(rule policy.Rule) []string {
	var out []string
	for _, p := range rule.Platforms {
		out = append(out, p.Name)
	}
	return out
}

// pushSigned pushes img by digest, signs it, attaches the attestations, and
// only then moves the tag: nothing unsigned is ever tagged.
func pushSigned(ctx context.Context, c *oci.Client, img v1.Image, ref name.Reference, key crypto.Signer, atts []*dsse.Envelope) (name.Digest, error) {
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	// Check the attestations before pushing anything: one that does not
	// name the image would otherwise fail after the push and signature.
	pts := make([]string, len(atts))
	for i, env := range atts {
		if pts[i], err = predicateType(env); err != nil {
			return name.Digest{}, err
		}
		if !statementNames(env, d.Hex) {
			return name.Digest{}, fmt.Errorf("%w: attestation %d (%s) does not name %s@%s among its subjects; an attestation must be about the pushed image (an encrypted image's digest is known only when it is published)", oci.ErrDigestMismatch, i+1, pts[i], ref.Context(), d)
		}
	}
	dref, err := c.Push(ctx, img, ref.Context().Digest(d.String()))
	if err != nil {
		return name.Digest{}, err
	}
	if err := c.Sign(ctx, dref, key); err != nil {
		return name.Digest{}, err
	}
	for i, env := range atts {
		if err := c.Attest(ctx, dref, env, pts[i]); err != nil {
			return name.Digest{}, err
		}
	}
	if _, isDigest := ref.(name.Digest); !isDigest {
		if _, err := c.Push(ctx, img, ref); err != nil {
			return name.Digest{}, err
		}
	}
	return dref, nil
}

func predicateType(env *dsse.Envelope) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return "", fmt.Errorf("%w: attestation payload: %w", oci.ErrArtifact, err)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.PredicateType == "" {
		return "", fmt.Errorf("%w: attestation payload is not an in-toto statement with a predicateType", oci.ErrArtifact)
	}
	return st.PredicateType, nil
}

// statementNames reports whether env's in-toto statement has a subject with
// the sha256 digest hex.
func statementNames(env *dsse.Envelope, hex string) bool {
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return false
	}
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return false
	}
	for _, s := range st.Subject {
		if s.Digest["sha256"] == hex {
			return true
		}
	}
	return false
}

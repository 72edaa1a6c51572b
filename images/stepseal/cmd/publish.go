package cmd

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// registryFlags are the flags every registry command shares.
type registryFlags struct{ insecure bool }

// add adds --insecure to c and makes c's errors say when a loopback
// registry speaks plain HTTP and --insecure was not given. c.RunE must be
// set.
func (r *registryFlags) add(c *cobra.Command) {
	c.Flags().BoolVar(&r.insecure, "insecure", false, "allow plain HTTP (only for loopback registries)")
	runE := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error { return r.hint(runE(cmd, args)) }
}

// hintError is err followed by a hint for the user.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() + " " + e.hint }
func (e hintError) Unwrap() error { return e.err }

func (r *registryFlags) hint(err error) error {
	var pe *oci.PlainHTTPError
	if r.insecure || !errors.As(err, &pe) || !pe.Loopback {
		return err
	}
	return hintError{err: err, hint: fmt.Sprintf("(the registry at %s speaks plain HTTP; pass --insecure for a loopback registry)", pe.Registry)}
}

func (r *registryFlags) opts() []oci.Option {
	if r.insecure {
		return []oci.Option{oci.WithInsecure()}
	}
	return nil
}

// policyFlags load the platform policy, signed or not.
type policyFlags struct {
	path      string
	keys      []string
	threshold int
	state     string
}

func (p *policyFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&p.path, "platform-policy", "", "platform policy: which platforms may decrypt which artifact")
	c.Flags().StringArrayVar(&p.keys, "policy-key", nil, "public key of a policy owner: the policy must be a DSSE envelope signed by it (repeatable)")
	c.Flags().IntVar(&p.threshold, "policy-threshold", 0, "owner signatures the policy needs (default 1)")
	c.Flags().StringVar(&p.state, "state", "", "directory recording the newest signed policy version accepted, to refuse rollback (default $XDG_STATE_HOME/stepseal or ~/.local/state/stepseal)")
}

// load reads the policy. A signed one is checked against, and then
// recorded in, the state directory: an older version than one accepted
// before, or the same version with other content, is policy.ErrRollback.
func (p *policyFlags) load() (*policy.Policy, error) {
	if p.path == "" {
		return nil, fmt.Errorf("--platform-policy is required")
	}
	keys, err := loadVerifiers(p.keys)
	if err != nil {
		return nil, err
	}
	opts := policy.Options{Keys: keys, Threshold: p.threshold}
	if len(keys) > 0 {
		dir := p.state
		if dir == "" {
			if dir, err = policy.DefaultStateDir(); err != nil {
				return nil, err
			}
		}
		opts.State = policy.NewState(dir)
	}
	return policy.Load(p.path, opts)
}

// loadCryptoSigner reads a private key (PEM or cosign-encrypted) for OCI signing.
func loadCryptoSigner(path string) (crypto.Signer, error) {
	return signing.LoadPrivateKey(path, signing.EnvOrPrompt)
}

type publishReport struct {
	Ref          string   `json:"ref"`
	Digest       string   `json:"digest"`
	Encrypted    bool     `json:"encrypted"`
	Platforms    []string `json:"platforms"`
	Rule         string   `json:"rule"`
	Attestations int      `json:"attestations"`
	// Reissued counts attestations that did not name the image and were
	// re-issued for it, signed by the publisher.
	Reissued int `json:"reissued"`
	// Attested says, per --attest file, who signed it and what it is about.
	Attested []attestedReport `json:"attested,omitempty"`
}

// attestedReport is one verified attestation.
type attestedReport struct {
	File          string `json:"file"`
	PredicateType string `json:"predicateType"`
	// SignedBy is the --attest-key that verified it, KeyID its key ID.
	SignedBy string `json:"signedBy"`
	KeyID    string `json:"keyID"`
	// Subject is the artifact digest the statement names.
	Subject string `json:"subject"`
	// Reissued: attached re-issued for the image by the publisher, the
	// original envelope carried in the image subject's annotations.
	Reissued bool `json:"reissued"`
}

// attestation is an --attest envelope and the file it was read from.
type attestation struct {
	file string
	env  *dsse.Envelope
}

// encryptForPolicy applies pol's rule for ref's repository: refuse when no
// rule covers it, encrypt to exactly the rule's platforms when it says so.
func encryptForPolicy(ctx context.Context, img v1.Image, ref name.Reference, pol *policy.Policy) (v1.Image, *publishReport, error) {
	repo := ref.Context().Name()
	rule, err := pol.Rule(repo)
	if err != nil {
		return nil, nil, err
	}
	r := &publishReport{Ref: ref.String(), Encrypted: rule.Encrypt, Rule: rule.Match}
	for _, p := range rule.Platforms {
		r.Platforms = append(r.Platforms, p.Name)
	}
	if rule.Encrypt {
		if img, err = crypt.EncryptFor(ctx, pol, repo, img); err != nil {
			return nil, nil, err
		}
	}
	return img, r, nil
}

// pushSigned pushes img by digest, signs it, attaches the attestations, and
// only then moves the tag: nothing unsigned is ever tagged.
func pushSigned(ctx context.Context, img v1.Image, ref name.Reference, key crypto.Signer, atts []*dsse.Envelope, ropts []oci.Option) (name.Digest, error) {
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
	dref, err := oci.Push(ctx, img, ref.Context().Digest(d.String()), ropts...)
	if err != nil {
		return name.Digest{}, err
	}
	if err := oci.Sign(ctx, dref, key, ropts...); err != nil {
		return name.Digest{}, err
	}
	for i, env := range atts {
		if err := oci.Attest(ctx, dref, env, pts[i], ropts...); err != nil {
			return name.Digest{}, err
		}
	}
	if _, isDigest := ref.(name.Digest); !isDigest {
		if _, err := oci.Push(ctx, img, ref, ropts...); err != nil {
			return name.Digest{}, err
		}
	}
	return dref, nil
}

// publishImage checks the attestations, then is encryptForPolicy followed
// by pushSigned. Every attestation must be signed by one of attKeys and name
// the artifact (oci.VerifyStatement, against oci.ArtifactDigests of img as
// given) — both checked before anything is pushed. One that names the
// published image is attached as it is; one that cannot (an encrypted
// image's digest only exists once it is encrypted; a file's provenance
// names the file) is re-issued for it, signed by key, with the original
// envelope carried in the statement (oci.Reissue): the publisher vouches
// only for statements whose signature verified.
func publishImage(ctx context.Context, img v1.Image, ref name.Reference, pol *policy.Policy, key crypto.Signer, atts []attestation, attKeys []oci.StatementKey, ropts []oci.Option) (*publishReport, error) {
	digests, err := oci.ArtifactDigests(img)
	if err != nil {
		return nil, err
	}
	verified := make([]*oci.VerifiedStatement, len(atts))
	for i, a := range atts {
		if verified[i], err = oci.VerifyStatement(ctx, a.file, a.env, attKeys, digests); err != nil {
			return nil, err
		}
	}
	img, r, err := encryptForPolicy(ctx, img, ref, pol)
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	target := ref.Context().Digest(d.String())
	out := make([]*dsse.Envelope, len(verified))
	for i, vs := range verified {
		ar := attestedReport{File: vs.Source, PredicateType: vs.PredicateType, SignedBy: vs.KeyName, KeyID: vs.KeyID, Subject: vs.Subject.String()}
		out[i] = vs.Envelope
		if !statementNames(vs.Envelope, d.Hex) {
			if out[i], err = oci.Reissue(ctx, vs, target, key); err != nil {
				return nil, fmt.Errorf("attestation %s: %w", vs.Source, err)
			}
			ar.Reissued = true
			r.Reissued++
		}
		r.Attested = append(r.Attested, ar)
	}
	dref, err := pushSigned(ctx, img, ref, key, out, ropts)
	if err != nil {
		return nil, err
	}
	r.Digest, r.Attestations = dref.String(), len(atts)
	return r, nil
}

func predicateType(env *dsse.Envelope) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return "", fmt.Errorf("attestation payload: %w", err)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.PredicateType == "" {
		return "", fmt.Errorf("attestation payload is not an in-toto statement with a predicateType")
	}
	return st.PredicateType, nil
}

// inTotoStatement is what publish and rotate read of an attestation.
type inTotoStatement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

// statementNames reports whether env's in-toto statement has a subject with
// the sha256 digest hex.
func statementNames(env *dsse.Envelope, hex string) bool {
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return false
	}
	var st inTotoStatement
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

func readEnvelope(path string) (*dsse.Envelope, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil || env.Payload == "" || len(env.Signatures) == 0 {
		return nil, fmt.Errorf("%s: not a signed DSSE envelope", path)
	}
	return &env, nil
}

func newPublish(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var pf policyFlags
	var keyPath string
	var attest, attestKeys []string
	c := &cobra.Command{
		Use:   "publish PATH REF --key KEY --platform-policy FILE [--attest FILE... [--attest-key PUB...]] [--insecure]",
		Short: "Encrypt an artifact to exactly the platforms the policy names, push it, sign it and attach attestations",
		Long: `Publish PATH (a file, a directory, an OCI image layout, or an OCI/docker image
tarball) to REF. The platform policy decides: an artifact no rule covers is
refused; a rule with encrypt: true encrypts every layer (ocicrypt JWE) to
exactly its platforms. The image is pushed by digest, signed (cosign format, at
sha256-<hex>.sig and as an OCI 1.1 referrer), attested (--attest: DSSE
envelopes of in-toto statements, e.g. a run's provenance.json), and only then
tagged. An attestation is attached only if its signature verifies with an
--attest-key (default: the public key of --key) and one of its subjects is the
artifact: for a file, its sha256 (what stepseal run's provenance names); for a
directory, the sha256 of its tar layer; for any artifact, the digest of its
manifest before encryption. One whose subjects do not include the published
image (an encrypted image's digest exists only once it is encrypted) is
re-issued for it: the same statement with the image added as a subject,
signed by --key, the original envelope kept in that subject's annotation
stepseal.dev/reissued-from so its signature stays verifiable.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if keyPath == "" {
				return fmt.Errorf("--key is required")
			}
			ropts := rf.opts()
			ref, err := oci.ParseReference(args[1], ropts...)
			if err != nil {
				return err
			}
			pol, err := pf.load()
			if err != nil {
				return err
			}
			key, err := loadCryptoSigner(keyPath)
			if err != nil {
				return err
			}
			var atts []attestation
			for _, a := range attest {
				env, err := readEnvelope(a)
				if err != nil {
					return err
				}
				atts = append(atts, attestation{file: a, env: env})
			}
			attKeys := []oci.StatementKey{{Name: "the public key of --key " + keyPath, Public: key.Public()}}
			if len(attestKeys) > 0 {
				attKeys = nil
				for _, p := range attestKeys {
					v, err := signing.LoadVerifier(p)
					if err != nil {
						return err
					}
					attKeys = append(attKeys, oci.StatementKey{Name: p, Public: v.Public()})
				}
			}
			src, err := oci.Open(args[0])
			if err != nil {
				return err
			}
			img, ok := src.(v1.Image)
			if !ok {
				return fmt.Errorf("%s holds an image index; publish one image at a time", args[0])
			}
			r, err := publishImage(ctx, img, ref, pol, key, atts, attKeys, ropts)
			if err != nil {
				return err
			}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintln(w, r.Digest)
				if r.Encrypted {
					fmt.Fprintf(w, "encrypted to %v (rule %q), signed, %d attestation(s)", r.Platforms, r.Rule, r.Attestations)
				} else {
					fmt.Fprintf(w, "public (rule %q), signed, %d attestation(s)", r.Rule, r.Attestations)
				}
				if r.Reissued > 0 {
					fmt.Fprintf(w, ", %d re-issued for the image by the publisher", r.Reissued)
				}
				fmt.Fprintln(w)
			})
		},
	}
	rf.add(c)
	pf.add(c)
	c.Flags().StringVar(&keyPath, "key", "", "private key to sign with (PEM or cosign-encrypted)")
	c.Flags().StringArrayVar(&attest, "attest", nil, "DSSE envelope to attach as an attestation (repeatable)")
	c.Flags().StringArrayVar(&attestKeys, "attest-key", nil, "public key an --attest envelope must be signed with (repeatable; default: the public key of --key)")
	return c
}

type pullReport struct {
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	Out        string   `json:"out"`
	Signatures []string `json:"signatures"`
	Encrypted  bool     `json:"encrypted"`
	Recipients []string `json:"recipients,omitempty"`
}

// pullVerified resolves ref to a digest, requires a valid signature by pub,
// checks the recipients against pol (when the image is encrypted, or the
// policy says it must be), and decrypts with decKey.
func pullVerified(ctx context.Context, ref name.Reference, pub crypto.PublicKey, pol *policy.Policy, decKey crypto.PrivateKey, ropts []oci.Option) (v1.Image, *pullReport, error) {
	d, err := oci.Resolve(ctx, ref, ropts...)
	if err != nil {
		return nil, nil, err
	}
	sigs, err := oci.VerifySignatures(ctx, d, pub, ropts...)
	if err != nil {
		return nil, nil, err
	}
	r := &pullReport{Ref: ref.String(), Digest: d.String()}
	for _, s := range sigs {
		r.Signatures = append(r.Signatures, s.KeyID)
	}
	img, err := oci.Pull(ctx, d, ropts...)
	if err != nil {
		return nil, nil, err
	}
	recips, err := crypt.Recipients(img)
	if err != nil {
		return nil, nil, err
	}
	for _, rc := range recips {
		r.Recipients = append(r.Recipients, fmt.Sprintf("layer %d: %s", rc.Layer, rc))
	}
	r.Encrypted = len(recips) > 0
	repo := ref.Context().Name()
	if pol != nil {
		rule, err := pol.Rule(repo)
		if err != nil {
			return nil, nil, err
		}
		if rule.Encrypt && !r.Encrypted {
			return nil, nil, fmt.Errorf("%w: %s is not encrypted, but rule %q of policy %q requires encryption", crypt.ErrRecipients, d, rule.Match, pol.Name)
		}
		if r.Encrypted {
			if err := crypt.CheckRecipients(img, pol, repo); err != nil {
				return nil, nil, err
			}
		}
	} else if r.Encrypted {
		return nil, nil, fmt.Errorf("%s is encrypted: --platform-policy is required to check who else can decrypt it", d)
	}
	if r.Encrypted {
		if decKey == nil {
			return nil, nil, fmt.Errorf("%s is encrypted: --decryption-key is required", d)
		}
		if img, err = crypt.Decrypt(ctx, img, decKey); err != nil {
			return nil, nil, err
		}
	}
	return img, r, nil
}

func newPull(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var pf policyFlags
	var out, pubPath, decPath string
	c := &cobra.Command{
		Use:   "pull REF --out PATH --key PUB [--decryption-key KEY] [--platform-policy FILE]",
		Short: "Verify the signature, check the recipients against policy, decrypt, and verify layer digests",
		Long: `Pull REF by digest (a tag is resolved first and only the digest is used),
require a signature by --key, check that an encrypted image's recipients are
exactly the platforms the policy names, decrypt with --decryption-key, and
write the artifact: a file, a directory, or (for container images) an OCI
image layout. Nothing is written unless every check passed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if out == "" || pubPath == "" {
				return fmt.Errorf("--out and --key are required")
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("--out %s already exists", out)
			}
			ropts := rf.opts()
			ref, err := oci.ParseReference(args[0], ropts...)
			if err != nil {
				return err
			}
			v, err := signing.LoadVerifier(pubPath)
			if err != nil {
				return err
			}
			var pol *policy.Policy
			if pf.path != "" {
				if pol, err = pf.load(); err != nil {
					return err
				}
			}
			var dec crypto.PrivateKey
			if decPath != "" {
				if dec, err = crypt.LoadPrivateKey(decPath, signing.EnvOrPrompt); err != nil {
					return err
				}
			}
			img, r, err := pullVerified(ctx, ref, v.Public(), pol, dec, ropts)
			if err != nil {
				return err
			}
			if err := saveArtifact(r.Digest, img, out); err != nil {
				return err
			}
			r.Out = out
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				state := "not encrypted"
				if r.Encrypted {
					state = fmt.Sprintf("decrypted (recipients match policy %q)", pol.Name)
				}
				fmt.Fprintf(w, "%s: signature by %v verified, %s, layer digests verified, wrote %s\n", r.Digest, r.Signatures, state, out)
			})
		},
	}
	rf.add(c)
	pf.add(c)
	c.Flags().StringVar(&out, "out", "", "where to write the artifact (must not exist)")
	c.Flags().StringVar(&pubPath, "key", "", "public key the artifact must be signed with")
	c.Flags().StringVar(&decPath, "decryption-key", "", "this platform's private key (PEM or JWK)")
	return c
}

// saveArtifact writes a file or directory artifact as such, any other image
// as an OCI image layout at out.
func saveArtifact(what string, img v1.Image, out string) error {
	kind, err := oci.Kind(img)
	if err != nil {
		return err
	}
	switch kind {
	case oci.ArtifactTypeFile:
		return oci.SaveFile(what, img, out)
	case oci.ArtifactTypeDir:
		return oci.SaveDir(what, img, out)
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img); err != nil {
		os.RemoveAll(out)
		return err
	}
	return nil
}

func newCrypt(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "crypt", Short: "Inspect and rotate the recipients of encrypted artifacts"}
	c.AddCommand(newCryptRecipients(ro), newCryptRotate(ro))
	return c
}

type recipientsReport struct {
	Ref        string            `json:"ref"`
	Digest     string            `json:"digest"`
	Recipients []crypt.Recipient `json:"recipients"`
	// With a policy: Platforms can decrypt (recipients of every encrypted
	// layer), UnknownKeys are recipient key IDs of no platform of it.
	Platforms     []string `json:"platforms,omitempty"`
	UnknownKeys   []string `json:"unknownKeys,omitempty"`
	Policy        string   `json:"policy,omitempty"`
	MatchesPolicy *bool    `json:"matchesPolicy,omitempty"`
	Error         string   `json:"error,omitempty"`
}

func newCryptRecipients(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var pf policyFlags
	c := &cobra.Command{
		Use:   "recipients REF [--platform-policy FILE]",
		Short: "List who can decrypt an artifact (and, with a policy, which platforms, and whether that is exactly who may)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ropts := rf.opts()
			ref, err := oci.ParseReference(args[0], ropts...)
			if err != nil {
				return err
			}
			d, err := oci.Resolve(ctx, ref, ropts...)
			if err != nil {
				return err
			}
			img, err := oci.Pull(ctx, d, ropts...)
			if err != nil {
				return err
			}
			recips, err := crypt.Recipients(img)
			if err != nil {
				return err
			}
			r := recipientsReport{Ref: ref.String(), Digest: d.String(), Recipients: recips}
			var checkErr error
			if pf.path != "" {
				pol, err := pf.load()
				if err != nil {
					return err
				}
				r.Policy = pol.Name
				r.Recipients = crypt.NamePlatforms(recips, pol)
				r.Platforms = crypt.CanDecrypt(r.Recipients, pol)
				seen := map[string]bool{}
				for _, rc := range r.Recipients {
					if rc.Platform == "" && rc.KeyID != "" && !seen[rc.KeyID] {
						seen[rc.KeyID] = true
						r.UnknownKeys = append(r.UnknownKeys, rc.KeyID)
					}
				}
				checkErr = crypt.CheckRecipients(img, pol, ref.Context().Name())
				ok := checkErr == nil
				r.MatchesPolicy = &ok
				if checkErr != nil {
					r.Error = OneLine(checkErr)
				}
			}
			if err := ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n", r.Digest)
				if len(recips) == 0 {
					fmt.Fprintln(w, "  not encrypted")
				}
				for _, rc := range r.Recipients {
					if r.Policy != "" {
						fmt.Fprintf(w, "  layer %d: %s\n", rc.Layer, rc.Who())
					} else {
						fmt.Fprintf(w, "  layer %d: %s\n", rc.Layer, rc)
					}
				}
				if r.Policy != "" && len(recips) > 0 {
					can := "none"
					if len(r.Platforms) > 0 {
						can = strings.Join(r.Platforms, ", ")
					}
					fmt.Fprintf(w, "platforms of policy %q that can decrypt: %s\n", r.Policy, can)
				}
				if r.MatchesPolicy != nil && *r.MatchesPolicy {
					fmt.Fprintf(w, "recipients are exactly the platforms policy %q names\n", r.Policy)
				}
			}); err != nil {
				return err
			}
			if checkErr != nil {
				return checkErr
			}
			return nil
		},
	}
	rf.add(c)
	pf.add(c)
	return c
}

type rotateReport struct {
	Ref          string   `json:"ref"`
	OldDigest    string   `json:"oldDigest"`
	NewDigest    string   `json:"newDigest"`
	Platforms    []string `json:"platforms"`
	Attestations int      `json:"attestations"`
	OldDeleted   bool     `json:"oldDeleted"`
}

func newCryptRotate(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var pf policyFlags
	var keyPath, decPath string
	var keepOld bool
	c := &cobra.Command{
		Use:   "rotate REF --platform-policy FILE --decryption-key KEY --key KEY",
		Short: "Re-encrypt with fresh content keys to the platforms the policy names now, re-sign, move the tag",
		Long: `Rotate after a platform was removed from (or added to) the policy. Rewrapping
the old content key would not revoke a removed platform that kept it, so the
artifact is decrypted (with --decryption-key, a platform that is still
authorized) and encrypted again with fresh content keys. The new image is
signed with --key (which must also have signed the old one), the old image's
attestations follow it, the tag moves, and the old manifest is deleted from
the registry unless --keep-old.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if keyPath == "" || decPath == "" {
				return fmt.Errorf("--key and --decryption-key are required")
			}
			ropts := rf.opts()
			ref, err := oci.ParseReference(args[0], ropts...)
			if err != nil {
				return err
			}
			if _, ok := ref.(name.Tag); !ok {
				return fmt.Errorf("rotate needs a tag to move, %s has none", ref)
			}
			pol, err := pf.load()
			if err != nil {
				return err
			}
			key, err := loadCryptoSigner(keyPath)
			if err != nil {
				return err
			}
			dec, err := crypt.LoadPrivateKey(decPath, signing.EnvOrPrompt)
			if err != nil {
				return err
			}
			old, err := oci.Resolve(ctx, ref, ropts...)
			if err != nil {
				return err
			}
			if _, err := oci.VerifySignatures(ctx, old, key.Public(), ropts...); err != nil {
				return fmt.Errorf("refusing to rotate %s: %w", old, err)
			}
			atts, err := oci.VerifyAttestations(ctx, old, key.Public(), nil, ropts...)
			if err != nil && !errors.Is(err, oci.ErrNoSignature) {
				return err
			}
			oldImg, err := oci.Pull(ctx, old, ropts...)
			if err != nil {
				return err
			}
			repo := ref.Context().Name()
			newImg, err := crypt.Rotate(ctx, pol, repo, oldImg, dec)
			if err != nil {
				return err
			}
			// The attestations name the old digest: re-issue them for the
			// new one (oci.Attest refuses a statement about another image).
			nd0, err := newImg.Digest()
			if err != nil {
				return err
			}
			var envs []*dsse.Envelope
			for _, a := range atts {
				env, err := oci.Move(ctx, a.Statement, old, ref.Context().Digest(nd0.String()), key)
				if err != nil {
					return err
				}
				envs = append(envs, env)
			}
			rule, err := pol.Rule(repo)
			if err != nil {
				return err
			}
			nd, err := pushSigned(ctx, newImg, ref, key, envs, ropts)
			if err != nil {
				return err
			}
			r := rotateReport{Ref: ref.String(), OldDigest: old.String(), NewDigest: nd.String(), Attestations: len(envs)}
			for _, p := range rule.Platforms {
				r.Platforms = append(r.Platforms, p.Name)
			}
			if !keepOld && nd.String() != old.String() {
				if err := oci.Delete(ctx, old, ropts...); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: old manifest %s not deleted: %s\n", old, OneLine(err))
				} else {
					r.OldDeleted = true
				}
			}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "%s -> %s: re-encrypted to %v with fresh content keys, signed, %d attestation(s) moved, tag %s moved", r.OldDigest, r.NewDigest, r.Platforms, r.Attestations, ref)
				if r.OldDeleted {
					fmt.Fprint(w, ", old manifest deleted")
				}
				fmt.Fprintln(w)
			})
		},
	}
	rf.add(c)
	pf.add(c)
	c.Flags().StringVar(&keyPath, "key", "", "private key that signed the artifact and signs the rotated one")
	c.Flags().StringVar(&decPath, "decryption-key", "", "private key of a platform that can decrypt the current artifact")
	c.Flags().BoolVar(&keepOld, "keep-old", false, "do not delete the old manifest from the registry")
	return c
}

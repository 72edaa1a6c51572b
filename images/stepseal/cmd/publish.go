package cmd

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
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

// client is the one registry client of a command.
func (r *registryFlags) client() (*oci.Client, error) { return oci.New(r.opts()...) }

// policyFlags load the platform policy, signed or not.
type policyFlags struct {
	path      string
	keys      []string
	threshold int
	state     string
	// trust, when enabled, is where the policy (and, for pull, the
	// publisher's key and the image's digest) comes from: path names a TUF
	// target.
	trust trustSourceFlags
	cmd   *cobra.Command
	// from describes the TUF target the policy was taken from.
	from string
}

func (p *policyFlags) add(c *cobra.Command) {
	p.cmd = c
	p.trust.add(c)
	c.Flags().StringVar(&p.path, "platform-policy", "", "platform policy: which platforms may decrypt which artifact")
	c.Flags().StringArrayVar(&p.keys, "policy-key", nil, "public key of a policy owner: the policy must be a DSSE envelope signed by it (repeatable)")
	c.Flags().IntVar(&p.threshold, "policy-threshold", 0, "owner signatures the policy needs (default 1)")
	c.Flags().StringVar(&p.state, "state", "", "directory recording the newest signed policy version accepted, to refuse rollback (default $XDG_STATE_HOME/stepseal or ~/.local/state/stepseal)")
}

// load reads the policy (publish.LoadPolicy: a signed one is checked
// against, and then recorded in, the state directory).
func (p *policyFlags) load(ctx context.Context) (*policy.Policy, error) {
	if p.path == "" {
		return nil, fmt.Errorf("--platform-policy is required")
	}
	if p.trust.enabled() {
		if err := p.trust.refuse(p.cmd, "policy-key", "policy-threshold", "state"); err != nil {
			return nil, err
		}
		root, err := p.trust.open(ctx)
		if err != nil {
			return nil, err
		}
		pol, d, err := root.Policy(ctx, p.path)
		if err != nil {
			return nil, err
		}
		p.from = d.Describe()
		return pol, nil
	}
	keys, err := loadVerifiers(p.keys)
	if err != nil {
		return nil, err
	}
	return publish.LoadPolicy(publish.PolicySource{Path: p.path, Keys: keys, Threshold: p.threshold, StateDir: p.state})
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

func newPublishReport(r *publish.Result) *publishReport {
	out := &publishReport{Ref: r.Ref.String(), Digest: r.Digest.String(), Encrypted: r.Encrypted, Platforms: r.Platforms, Rule: r.Rule, Attestations: len(r.Attested), Reissued: r.Reissued()}
	for _, a := range r.Attested {
		out.Attested = append(out.Attested, attestedReport{File: a.Source, PredicateType: a.PredicateType, SignedBy: a.KeyName, KeyID: a.KeyID, Subject: a.Subject.String(), Reissued: a.Reissued})
	}
	return out
}

func newPublish(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var pf policyFlags
	var keyPath, passwordFile, sourceDir string
	var results publish.ResultFiles
	var attest, attestKeys []string
	c := &cobra.Command{
		Use:   "publish PATH REF --key KEY --platform-policy FILE [--attest FILE... [--attest-key PUB...]] [--source-dir DIR] [--result-image-url FILE --result-image-digest FILE --result-artifact-outputs FILE] [--insecure]",
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
stepseal.dev/reissued-from so its signature stays verifiable.

What the stepseal-publish Tekton Task runs: --source-dir makes PATH relative to
a directory it must stay inside (no absolute path, "..", or symbolic link
leading out); --key-password-file reads an encrypted key's password from a
file (a Secret's cosign.password); --result-* write Tekton results in the form
Tekton Chains reads (IMAGE_URL, IMAGE_DIGEST, and ARTIFACT_OUTPUTS for a file
or directory artifact).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := checkPublishArgs(cmd, args); err != nil {
				return err
			}
			path := args[0]
			if sourceDir != "" {
				p, err := publish.ArtifactWithin(sourceDir, path)
				if err != nil {
					return err
				}
				path = p
			}
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref, err := c.ParseReference(args[1])
			if err != nil {
				return err
			}
			pol, err := pf.load(ctx)
			if err != nil {
				return err
			}
			if err := publish.Covered(pol, ref); err != nil {
				return err
			}
			pass := signing.EnvOrPrompt
			if passwordFile != "" {
				pass = signing.PasswordFile(passwordFile)
			}
			key, err := signing.LoadPrivateKey(keyPath, pass)
			if err != nil {
				return err
			}
			var atts []publish.Attestation
			for _, a := range attest {
				env, err := signing.ReadEnvelope(a)
				if err != nil {
					return err
				}
				atts = append(atts, publish.Attestation{Source: a, Envelope: env})
			}
			attKeys := []oci.StatementKey{{Name: "the public key of --key " + keyPath, Public: key.Public()}}
			if len(attestKeys) > 0 {
				attKeys = nil
				for _, p := range attestKeys {
					if pf.trust.enabled() {
						root, err := pf.trust.open(ctx)
						if err != nil {
							return err
						}
						pub, d, err := root.Key(ctx, p)
						if err != nil {
							return err
						}
						attKeys = append(attKeys, oci.StatementKey{Name: d.Describe(), Public: pub})
						continue
					}
					v, err := signing.LoadVerifier(p)
					if err != nil {
						return err
					}
					attKeys = append(attKeys, oci.StatementKey{Name: p, Public: v.Public()})
				}
			}
			src, err := oci.Open(path)
			if err != nil {
				return err
			}
			img, ok := src.(v1.Image)
			if !ok {
				return fmt.Errorf("%s holds an image index; publish one image at a time", args[0])
			}
			res, err := publish.Publish(ctx, c, img, ref, publish.Options{Policy: pol, Key: key, Attestations: atts, AttestKeys: attKeys})
			if err != nil {
				return err
			}
			if !results.Empty() {
				tr, err := publish.TaskResultsOf(img, res)
				if err != nil {
					return err
				}
				if err := tr.WriteFiles(results); err != nil {
					return fmt.Errorf("%s published, but: %w", res.Digest, err)
				}
			}
			r := newPublishReport(res)
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
	c.Flags().StringVar(&passwordFile, "key-password-file", "", "file holding the password of an encrypted --key (read only if it is encrypted; default: COSIGN_PASSWORD or a prompt)")
	c.Flags().StringVar(&sourceDir, "source-dir", "", "PATH is relative to this directory and must stay inside it")
	c.Flags().StringVar(&results.ImageURL, "result-image-url", "", "write REF (Tekton result IMAGE_URL) to this file")
	c.Flags().StringVar(&results.ImageDigest, "result-image-digest", "", "write the pushed image's digest, sha256:<hex> (Tekton result IMAGE_DIGEST), to this file")
	c.Flags().StringVar(&results.ArtifactOutputs, "result-artifact-outputs", "", "for a file or directory artifact, write {uri, digest, isBuildArtifact} (Tekton result ARTIFACT_OUTPUTS, digest = the content's sha256) to this file")
	c.Flags().StringArrayVar(&attest, "attest", nil, "DSSE envelope to attach as an attestation (repeatable)")
	c.Flags().StringArrayVar(&attestKeys, "attest-key", nil, "public key an --attest envelope must be signed with (repeatable; default: the public key of --key; with --trust: a TUF key target)")
	return c
}

// checkPublishArgs refuses semantically empty values with a message of
// its own before anything is read or contacted: an empty PATH or REF, and
// a file flag that is empty or names a directory (a Task's file-name param
// left empty turns "$(workspaces.w.path)/$(params.P)" into "DIR/").
func checkPublishArgs(cmd *cobra.Command, args []string) error {
	if strings.TrimSpace(args[0]) == "" {
		return errors.New("PATH is empty: name the artifact to publish (a file, a directory, an OCI layout or an image tarball)")
	}
	if strings.TrimSpace(args[1]) == "" {
		return errors.New("REF is empty: name where to publish (registry/repository:tag)")
	}
	for _, f := range []string{"key", "platform-policy", "key-password-file", "source-dir", "result-image-url", "result-image-digest", "result-artifact-outputs"} {
		fl := cmd.Flags().Lookup(f)
		v := fl.Value.String()
		if f == "key" || f == "platform-policy" || fl.Changed {
			if !fl.Changed {
				return fmt.Errorf("--%s is required", f)
			}
			if strings.TrimSpace(v) == "" {
				return fmt.Errorf("--%s is empty", f)
			}
			if f != "source-dir" && strings.HasSuffix(v, "/") {
				return fmt.Errorf("--%s %q ends in /: the file name is empty", f, v)
			}
		}
	}
	return nil
}

type pullReport struct {
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	Out        string   `json:"out"`
	Signatures []string `json:"signatures"`
	Encrypted  bool     `json:"encrypted"`
	Recipients []string `json:"recipients,omitempty"`
	// Trust says which TUF role vouched for the tag's digest (--trust).
	Trust string `json:"trust,omitempty"`
}

// recipientLines are recipients as the pull and run reports list them.
func recipientLines(rs []crypt.Recipient) []string {
	var out []string
	for _, rc := range rs {
		out = append(out, fmt.Sprintf("layer %d: %s", rc.Layer, rc))
	}
	return out
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
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref, err := c.ParseReference(args[0])
			if err != nil {
				return err
			}
			var pub crypto.PublicKey
			var vouched string
			if pf.trust.enabled() {
				// The tag's digest and the publisher's key from TUF; the
				// registry's answer for the tag must be what TUF vouches for.
				root, err := pf.trust.open(ctx)
				if err != nil {
					return err
				}
				d, res, err := root.Image(ctx, c, ref)
				if err != nil {
					return err
				}
				vouched = fmt.Sprintf("TUF role %s v%d vouches for %s", res.Role, res.RoleVersion, d.DigestStr())
				k, _, err := root.Key(ctx, pubPath)
				if err != nil {
					return err
				}
				pub, ref = k, d
			} else {
				v, err := signing.LoadVerifier(pubPath)
				if err != nil {
					return err
				}
				pub = v.Public()
			}
			var pol *policy.Policy
			if pf.path != "" {
				if pol, err = pf.load(ctx); err != nil {
					return err
				}
			}
			var dec crypto.PrivateKey
			if decPath != "" {
				if dec, err = crypt.LoadPrivateKey(decPath, signing.EnvOrPrompt); err != nil {
					return err
				}
			}
			pulled, err := publish.Pull(ctx, c, ref, publish.PullOptions{CheckOptions: publish.CheckOptions{Key: pub, Policy: pol}, DecryptionKey: dec})
			if err != nil {
				return err
			}
			if err := pulled.Save(out); err != nil {
				return err
			}
			r := pullReport{Ref: args[0], Digest: pulled.Digest.String(), Out: out, Signatures: pulled.Signatures, Encrypted: pulled.Encrypted, Recipients: recipientLines(pulled.Recipients), Trust: vouched}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				if vouched != "" {
					fmt.Fprintf(w, "%s\n", vouched)
				}
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
	c.Flags().StringVar(&pubPath, "key", "", "public key the artifact must be signed with (with --trust: a TUF key target, keys/<name>.pub or a short name)")
	c.Flags().StringVar(&decPath, "decryption-key", "", "this platform's private key (PEM or JWK)")
	return c
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
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref, err := c.ParseReference(args[0])
			if err != nil {
				return err
			}
			var pol *policy.Policy
			if pf.path != "" {
				if pol, err = pf.load(ctx); err != nil {
					return err
				}
			}
			res, err := publish.Recipients(ctx, c, ref, pol)
			if err != nil {
				return err
			}
			recips := res.Recipients
			r := recipientsReport{Ref: ref.String(), Digest: res.Digest.String(), Recipients: res.Recipients, Platforms: res.Platforms, UnknownKeys: res.UnknownKeys, Policy: res.Policy}
			checkErr := res.Mismatch
			if pol != nil {
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
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref, err := c.ParseReference(args[0])
			if err != nil {
				return err
			}
			tag, ok := ref.(name.Tag)
			if !ok {
				return fmt.Errorf("rotate needs a tag to move, %s has none", ref)
			}
			pol, err := pf.load(ctx)
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
			res, err := publish.Rotate(ctx, c, tag, publish.RotateOptions{Policy: pol, Key: key, DecryptionKey: dec, KeepOld: keepOld})
			if err != nil {
				return err
			}
			if res.DeleteError != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: old manifest %s not deleted: %s\n", res.Old, OneLine(res.DeleteError))
			}
			r := rotateReport{Ref: ref.String(), OldDigest: res.Old.String(), NewDigest: res.New.String(), Platforms: res.Platforms, Attestations: res.Attestations, OldDeleted: res.OldDeleted}
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

package cmd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/rekor"
	"github.com/stepseal/stepseal/pkg/signing"
)

func newRekor(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "rekor", Short: "Log attestations in a Rekor v2 log and verify their Sigstore bundles"}
	c.AddCommand(newRekorTrustedRoot(ro), newRekorPublish(ro), newRekorVerify(ro))
	return c
}

// rekorReport is `rekor publish|verify -o json`.
type rekorReport struct {
	Verified      bool   `json:"verified"`
	LogOrigin     string `json:"logOrigin,omitempty"`
	LogIndex      int64  `json:"logIndex"`
	Duplicate     bool   `json:"duplicate,omitempty"`
	PredicateType string `json:"predicateType,omitempty"`
	Bundle        string `json:"bundle,omitempty"`
	Attached      string `json:"attached,omitempty"`
	Subject       string `json:"subject,omitempty"`
	// Reason is the pkg/reject reason of a refusal ("signature",
	// "mismatch", ...) or of a check that could not be made.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// fail prints rep with err (-o json) and returns err for main.
func (ro *rootOptions) rekorFail(cmd *cobra.Command, rep rekorReport, err error) error {
	rep.Error = err.Error()
	if r := reject.Of(err); r != nil {
		rep.Reason = r.Error()
	}
	if ro.output == "json" {
		if perr := ro.print(cmd.OutOrStdout(), rep, nil); perr != nil {
			return perr
		}
		return reportedError{err}
	}
	return err
}

func readPublicKey(flag, path string) (signing.Verifier, error) {
	if path == "" {
		return nil, fmt.Errorf("%s is required", flag)
	}
	v, err := signing.LoadVerifier(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return v, nil
}

func readTrustedRoot(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("--trusted-root is required")
	}
	data, err := limited.ReadFile(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("--trusted-root: %w", err)
	}
	return data, nil
}

func newRekorTrustedRoot(ro *rootOptions) *cobra.Command {
	var logKey, origin, out, since string
	c := &cobra.Command{
		Use:   "trusted-root --log-key LOG.pub --origin HOST [--since RFC3339] [--out trusted_root.json]",
		Short: "Write the Sigstore trusted_root.json of a self-hosted Rekor v2 log",
		Long: `Write a Sigstore trusted_root.json naming one self-hosted Rekor v2 log
(rekor-tiles): its public key (--log-key, PEM), its checkpoint origin
(--origin: the host name rekor-server was started with, --hostname; it becomes
baseUrl https://HOST, whose host sigstore-go takes as the origin) and its ID
(the checkpoint key's note hash). cosign verify-blob-attestation
--new-bundle-format --trusted-root and stepseal rekor verify read it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if logKey == "" || origin == "" {
				return fmt.Errorf("--log-key and --origin are required")
			}
			v, err := readPublicKey("--log-key", logKey)
			if err != nil {
				return err
			}
			t := time.Now()
			if since != "" {
				if t, err = time.Parse(time.RFC3339, since); err != nil {
					return fmt.Errorf("--since: %w", err)
				}
			}
			data, err := rekor.TrustedRoot(t, rekor.Log{Origin: origin, PublicKey: v.Public()})
			if err != nil {
				return err
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(append(data, '\n'))
				return err
			}
			return signing.WriteFileAtomic(out, append(data, '\n'), 0o644)
		},
	}
	c.Flags().StringVar(&logKey, "log-key", "", "the log's public key (PEM; rekor-server's --signer-filepath key)")
	c.Flags().StringVar(&origin, "origin", "", "the log's checkpoint origin (rekor-server --hostname): a bare host name")
	c.Flags().StringVar(&since, "since", "", "when the log key became valid (RFC 3339; default now)")
	c.Flags().StringVar(&out, "out", "", "write here instead of standard output")
	return c
}

func newRekorPublish(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var url, tilesURL, trustedRoot, envPath, keyPath, out, attach string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "publish --url URL --trusted-root trusted_root.json --envelope FILE --key SIGNER.pub [--out X.sigstore.json] [--attach IMAGE@sha256:...]",
		Short: "Log a signed attestation in Rekor v2 and write its verified Sigstore bundle",
		Long: `Log the signature of a DSSE attestation (--envelope) by --key in the Rekor v2
log at --url (hashedrekord v0.0.2 of the DSSE PAE's digest; ECDSA keys only:
Rekor v2 cannot log pure Ed25519 or RSA-PSS signatures), verify the log's
answer against the log named by --trusted-root, and write the Sigstore bundle
(v0.3) to --out (default: the envelope's name with .sigstore.json). An entry
already in the log (409) is read back from its tiles (--tiles-url, default
--url). --attach also attaches the bundle to an image as an OCI referrer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			rep := rekorReport{}
			if url == "" || envPath == "" {
				return fmt.Errorf("--url and --envelope are required")
			}
			key, err := readPublicKey("--key", keyPath)
			if err != nil {
				return err
			}
			trd, err := readTrustedRoot(trustedRoot)
			if err != nil {
				return err
			}
			l, err := rekor.LogFromTrustedRoot(trd, url)
			if err != nil {
				return err
			}
			l.TilesURL = tilesURL
			env, err := signing.ReadEnvelope(envPath)
			if err != nil {
				return ro.rekorFail(cmd, rep, err)
			}
			p, err := rekor.NewPublisher(l, timeout)
			if err != nil {
				return err
			}
			pub, err := p.Publish(ctx, env, key.Public())
			if err != nil {
				return ro.rekorFail(cmd, rep, err)
			}
			if out == "" {
				out = strings.TrimSuffix(strings.TrimSuffix(envPath, ".json"), ".dsse") + rekor.FileSuffix
			}
			if err := signing.WriteFileAtomic(out, pub.Bundle, 0o644); err != nil {
				return err
			}
			rep = rekorReport{Verified: true, LogOrigin: l.Origin, LogIndex: pub.LogIndex, Duplicate: pub.Duplicate, PredicateType: pub.PredicateType, Bundle: out}
			if attach != "" {
				c, err := rf.client()
				if err != nil {
					return err
				}
				ref, err := c.ParseDigest(attach)
				if err != nil {
					return fmt.Errorf("--attach: %w", err)
				}
				if err := c.AttachBundle(ctx, ref, pub.Bundle); err != nil {
					return ro.rekorFail(cmd, rep, err)
				}
				rep.Attached = ref.String()
			}
			return ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				what := "logged"
				if rep.Duplicate {
					what = "already logged"
				}
				fmt.Fprintf(w, "%s in %s at index %d (%s)\nbundle: %s\n", what, rep.LogOrigin, rep.LogIndex, rep.PredicateType, rep.Bundle)
				if rep.Attached != "" {
					fmt.Fprintf(w, "attached to %s\n", rep.Attached)
				}
			})
		},
	}
	c.Flags().StringVar(&url, "url", "", "the Rekor v2 log's URL (http(s)://host[:port]; POST /api/v2/log/entries)")
	c.Flags().StringVar(&tilesURL, "tiles-url", "", "where the log's tiles are served (default --url)")
	c.Flags().StringVar(&trustedRoot, "trusted-root", "", "the Sigstore trusted_root.json naming the log (stepseal rekor trusted-root)")
	c.Flags().StringVar(&envPath, "envelope", "", "the signed DSSE attestation (an in-toto statement)")
	c.Flags().StringVar(&keyPath, "key", "", "the signer's public key (PEM)")
	c.Flags().StringVar(&out, "out", "", "where to write the bundle (default <envelope>.sigstore.json)")
	c.Flags().StringVar(&attach, "attach", "", "also attach the bundle to this image (REPOSITORY@sha256:<hex>, a subject of the statement)")
	c.Flags().DurationVar(&timeout, "timeout", rekor.DefaultTimeout, "how long the log may take to answer")
	rf.add(c)
	return c
}

func newRekorVerify(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var bundlePath, keyPath, trustedRoot, subject, artifact, image string
	c := &cobra.Command{
		Use:   "verify (--bundle X.sigstore.json | --image IMAGE@sha256:...) --key SIGNER.pub --trusted-root trusted_root.json (--subject sha256:... | --artifact FILE | --image ...)",
		Short: "Verify a Sigstore bundle of an attestation logged in Rekor v2, offline",
		Long: `Verify a Sigstore bundle (--bundle, or those attached to --image) as cosign
verify-blob-attestation --new-bundle-format does with --key: the DSSE signature
by --key, the statement naming the artifact (--subject, the sha256 of
--artifact, or --image's digest), and the Rekor v2 entry of a log in
--trusted-root (checkpoint signed by the log, the entry rebuilt from the
envelope, its inclusion proof). Exit status 0 only when it verifies; the
reason of a refusal is named.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			key, err := readPublicKey("--key", keyPath)
			if err != nil {
				return err
			}
			trd, err := readTrustedRoot(trustedRoot)
			if err != nil {
				return err
			}
			logs, err := rekor.LogsFromTrustedRoot(trd)
			if err != nil {
				return err
			}
			var bundles [][]byte
			switch {
			case bundlePath != "" && image == "":
				b, err := limited.ReadFile(bundlePath, rekor.MaxBundleSize)
				if err != nil {
					return err
				}
				bundles = [][]byte{b}
			case image != "" && bundlePath == "":
				c, err := rf.client()
				if err != nil {
					return err
				}
				ref, err := c.ParseDigest(image)
				if err != nil {
					return fmt.Errorf("--image: %w", err)
				}
				if subject != "" || artifact != "" {
					return fmt.Errorf("--image is the subject: no --subject or --artifact with it")
				}
				subject = ref.DigestStr()
				if bundles, err = c.Bundles(ctx, ref); err != nil {
					return ro.rekorFail(cmd, rekorReport{Subject: subject}, err)
				}
			default:
				return fmt.Errorf("one of --bundle or --image is required")
			}
			if artifact != "" {
				if subject != "" {
					return fmt.Errorf("--subject or --artifact, not both")
				}
				f, err := os.Open(artifact)
				if err != nil {
					return err
				}
				h := sha256.New()
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
				subject = "sha256:" + hex.EncodeToString(h.Sum(nil))
			}
			if subject == "" {
				return fmt.Errorf("what the attestation must be about: --subject, --artifact or --image")
			}
			rep := rekorReport{Subject: subject}
			v, err := rekor.VerifyAny(bundles, rekor.VerifyOptions{Key: key.Public(), Logs: logs, Subject: subject})
			if err != nil {
				return ro.rekorFail(cmd, rep, err)
			}
			rep.Verified, rep.LogOrigin, rep.LogIndex, rep.PredicateType = true, v.Log.Origin, v.LogIndex, v.PredicateType
			return ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				fmt.Fprintf(w, "Verified OK: %s about %s\n  logged in %s at index %d (tree of %d)\n", rep.PredicateType, rep.Subject, rep.LogOrigin, rep.LogIndex, v.TreeSize)
			})
		},
	}
	c.Flags().StringVar(&bundlePath, "bundle", "", "the Sigstore bundle (.sigstore.json)")
	c.Flags().StringVar(&image, "image", "", "verify the bundles attached to this image (REPOSITORY@sha256:<hex>) about it")
	c.Flags().StringVar(&keyPath, "key", "", "the signer's public key (PEM): only its signature counts")
	c.Flags().StringVar(&trustedRoot, "trusted-root", "", "the Sigstore trusted_root.json naming the trusted Rekor v2 logs")
	c.Flags().StringVar(&subject, "subject", "", "the artifact's digest the statement must name (sha256:<hex>)")
	c.Flags().StringVar(&artifact, "artifact", "", "the artifact file (its sha256 must be a subject)")
	rf.add(c)
	return c
}

package cmd

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/vsa"
)

func newVSA(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "vsa", Short: "Verification summaries (SLSA VSA v1) the controller signs"}
	c.AddCommand(newVSAVerify(ro))
	return c
}

// vsaReport is `vsa verify -o json`.
type vsaReport struct {
	Verified           bool     `json:"verified"`
	Subject            string   `json:"subject"`
	ResourceURI        string   `json:"resourceUri"`
	VerifierID         string   `json:"verifierId"`
	Source             string   `json:"source,omitempty"`
	PolicyURI          string   `json:"policyUri,omitempty"`
	PolicyDigest       string   `json:"policyDigest,omitempty"`
	TimeVerified       string   `json:"timeVerified,omitempty"`
	VerificationResult string   `json:"verificationResult,omitempty"`
	VerifiedLevels     []string `json:"verifiedLevels,omitempty"`
	InputAttestations  int      `json:"inputAttestations,omitempty"`
	Warnings           []string `json:"warnings"`
	// Reason is the pkg/reject reason of a refusal ("signature", "expired",
	// ...) or of a check that could not be made ("unavailable").
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

func newVSAVerify(ro *rootOptions) *cobra.Command {
	var rf registryFlags
	var tf trustSourceFlags
	var keyPath, verifierID, subject, layoutDigest, layoutName, resourceURI, file string
	var levels []string
	var maxAge time.Duration
	c := &cobra.Command{
		Use:   "verify --key VERIFIER.pub --verifier-id ID --subject IMAGE@sha256:... (--layout-digest sha256:... | --trust URL --layout NAME) [--file VSA] [--max-age D]",
		Short: "Verify the VSA of an image as admission would",
		Long: `Verify that the image --subject carries a VSA (from its cosign .att tag or
OCI 1.1 referrers, or --file) signed by the verifier key --key, from verifier
--verifier-id, about the subject's digest and repository (resourceUri
oci://<registry>/<repository>, or --resource-uri), PASSED, made against the
layout that governs the image now (--layout-digest, or the current
layouts/<NAME>.layout from TUF with --trust, which also refuses a VSA one of
whose inputs was signed by a key the layout revokes now), and not older
than --max-age.
Exit status 0 only when it is; the reason of a refusal is named.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if keyPath == "" || verifierID == "" || subject == "" {
				return fmt.Errorf("--key, --verifier-id and --subject are required")
			}
			key, err := signing.LoadVerifier(keyPath)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			c, err := rf.client()
			if err != nil {
				return err
			}
			ref, err := c.ParseDigest(subject)
			if err != nil {
				return fmt.Errorf("--subject: %w", err)
			}
			exp := vsa.Expect{Key: key, VerifierID: verifierID, SubjectDigest: ref.DigestStr(), ResourceURI: resourceURI,
				PolicyDigest: layoutDigest, Levels: levels, MaxAge: maxAge}
			if exp.ResourceURI == "" {
				exp.ResourceURI = vsa.ResourceURI(ref.Context().RegistryStr(), ref.Context().RepositoryStr())
			}
			rep := vsaReport{Subject: ref.String(), ResourceURI: exp.ResourceURI, VerifierID: verifierID, Warnings: []string{}}
			switch {
			case tf.enabled():
				if layoutName == "" || layoutDigest != "" {
					return fmt.Errorf("with --trust, give --layout NAME (and no --layout-digest): the current layout is TUF's")
				}
				root, err := tf.open(ctx)
				if err != nil {
					return err
				}
				d, err := root.Layout(ctx, layoutName)
				if err != nil {
					return err
				}
				exp.PolicyDigest = store.Digest(d.Data)
				// None of its inputs signed by a key that layout revokes now.
				exp.Revocations = root.Revocations
			case layoutDigest == "":
				exp.WithoutPolicyDigestUnsafe = true
				rep.Warnings = append(rep.Warnings, "no --layout-digest or --trust: the VSA's layout was not compared with the current one")
			}
			var v *vsa.Verified
			if file != "" {
				data, rerr := limited.ReadFile(file, signing.MaxEnvelopeSize)
				if rerr != nil {
					return rerr
				}
				v, err = vsa.Verify(ctx, data, exp)
				rep.Source = file
			} else {
				var fi *vsa.FromImage
				if fi, err = vsa.VerifyImage(ctx, c, ref, exp); err == nil {
					v, rep.Source = fi.Verified, fi.Source
				}
			}
			if err != nil {
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
			p := v.Predicate
			rep.Verified = true
			rep.PolicyURI = p.GetPolicy().GetUri()
			rep.PolicyDigest = "sha256:" + p.GetPolicy().GetDigest()["sha256"]
			rep.TimeVerified = p.GetTimeVerified().AsTime().UTC().Format(time.RFC3339)
			rep.VerificationResult = p.GetVerificationResult()
			rep.VerifiedLevels = p.GetVerifiedLevels()
			rep.InputAttestations = len(p.GetInputAttestations())
			return ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				fmt.Fprintf(w, "VSA verified: %s\n  %s by %s at %s\n  policy %s (%s)\n  %d input attestation(s), levels %v, from %s\n",
					rep.Subject, rep.VerificationResult, rep.VerifierID, rep.TimeVerified, rep.PolicyURI, rep.PolicyDigest,
					rep.InputAttestations, rep.VerifiedLevels, rep.Source)
				for _, w2 := range rep.Warnings {
					fmt.Fprintf(w, "  warning: %s\n", w2)
				}
			})
		},
	}
	c.Flags().StringVar(&keyPath, "key", "", "the verifier's public key (PEM): only its signature counts")
	c.Flags().StringVar(&verifierID, "verifier-id", "", "the verifier.id paired with --key (the controller's vsa.verifier-id)")
	c.Flags().StringVar(&subject, "subject", "", "the image, by digest: REPOSITORY@sha256:<hex>")
	c.Flags().StringVar(&layoutDigest, "layout-digest", "", "digest of the layout that governs the image now (sha256:<hex>)")
	c.Flags().StringVar(&layoutName, "layout", "", "with --trust: the layout's TUF target (layouts/<name>.layout or <name>), whose current digest the VSA must name")
	c.Flags().StringVar(&resourceURI, "resource-uri", "", "expected resourceUri (default oci://<registry>/<repository> of --subject)")
	c.Flags().StringVar(&file, "file", "", "read the VSA (a DSSE envelope) from this file instead of the registry")
	c.Flags().StringSliceVar(&levels, "verified-level", nil, "a level verifiedLevels must hold (repeatable)")
	c.Flags().DurationVar(&maxAge, "max-age", vsa.DefaultMaxAge, "oldest timeVerified accepted")
	tf.add(c)
	rf.add(c)
	return c
}

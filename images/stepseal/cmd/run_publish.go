package cmd

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
)

// publishedReport says where `stepseal run` published the pipeline's output.
type publishedReport struct {
	Registry   string   `json:"registry"`
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	Platforms  []string `json:"platforms"`
	Policy     string   `json:"policy"`
	Verified   bool     `json:"verified"`
	Recipients []string `json:"recipients"`
}

// prepareRunPolicy is publish.PrepareRunPolicy, saying which platforms got
// throwaway keys.
func prepareRunPolicy(ctx context.Context, w io.Writer, src, out string, owner signing.Signer) (*policy.Policy, map[string]crypto.PrivateKey, error) {
	rp, err := publish.PrepareRunPolicy(ctx, src, out, owner)
	if err != nil {
		return nil, nil, err
	}
	if len(rp.Made) > 0 {
		fmt.Fprintf(w, "making throwaway platform keys in %s (%s)\n", rp.KeyDir, strings.Join(rp.Made, ", "))
	}
	return rp.Policy, rp.PlatformKeys, nil
}

// publishRunOutput is publish.PublishRunOutput, printing what it did.
func publishRunOutput(ctx context.Context, w io.Writer, pol *policy.Policy, platformKeys map[string]crypto.PrivateKey, pipeline, runID, file string, prov *dsse.Envelope, publisher crypto.Signer) (*publishedReport, error) {
	res, err := publish.PublishRunOutput(ctx, publish.RunOutput{Policy: pol, PlatformKeys: platformKeys, Pipeline: pipeline, RunID: runID, File: file, Provenance: prov, Publisher: publisher})
	if res == nil {
		return nil, err
	}
	r := &publishedReport{Registry: res.Registry + " (in-process, gone when stepseal exits)", Ref: res.Ref.String(), Digest: res.Digest.String(), Platforms: res.Platforms, Policy: fmt.Sprintf("%s v%d", pol.Name, pol.Version), Recipients: recipientLines(res.Recipients), Verified: res.Verified}
	fmt.Fprintf(w, "published %s\n  %s\n  encrypted to %v per policy %s (signed by the owner), signed and attested (SLSA provenance)\n", r.Ref, r.Digest, r.Platforms, r.Policy)
	switch {
	case err != nil:
		return r, err
	case len(r.Platforms) == 0:
	case res.PulledBackAs == "":
		fmt.Fprintf(w, "  (no private key of platform %s here: not pulling it back)\n", r.Platforms[0])
	default:
		fmt.Fprintf(w, "  pulled back as platform %s: signature verified, recipients = policy, decrypted, sha256 matches the verified output\n", res.PulledBackAs)
	}
	return r, nil
}

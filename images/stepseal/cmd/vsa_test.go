package cmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	intoto "github.com/in-toto/attestation/go/v1"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// TestVSAVerify: `stepseal vsa verify` finds the VSA attached to an image
// in a real registry and accepts it; it refuses, naming the reason, an
// image whose only VSA a tenant signed, a FAILED VSA, a VSA made against
// another layout, and another verifier ID; --file reads one from disk.
func TestVSAVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	host := testregistry.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	newSigner := func() signing.Signer {
		k, err := signing.Generate(signing.ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		s, err := signing.NewSigner(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	key, tenant := newSigner(), newSigner()
	pem, err := signing.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "verifier.pub")
	if err := os.WriteFile(pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	const verifierID, layoutDigest = "https://stepseal.dev/controller/test", "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	// image pushes an image to repo and attaches a VSA about it signed by
	// signer with result; the VSA's file is returned too.
	image := func(repo string, signer signing.Signer, result string) (name.Digest, string) {
		t.Helper()
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := c.ParseReference(host + "/" + repo + ":v1")
		if err != nil {
			t.Fatal(err)
		}
		ref, err := oci.Push(ctx, img, tag, oci.WithInsecure(), oci.WithProgress(nil))
		if err != nil {
			t.Fatal(err)
		}
		sub, err := vsa.ImageSubject(ref.Context().Name() + "@" + ref.DigestStr())
		if err != nil {
			t.Fatal(err)
		}
		env, data, err := vsa.Sign(ctx, vsa.Summary{VerifierID: verifierID, Time: time.Now(), ResourceURI: vsa.ResourceURI(ref.Context().RegistryStr(), ref.Context().RepositoryStr()),
			Subjects: []*intoto.ResourceDescriptor{sub}, PolicyURI: "tuf:layouts/app.layout?role=app&version=1",
			PolicyDigest: map[string]string{"sha256": strings.TrimPrefix(layoutDigest, "sha256:")}, Result: result}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Attest(ctx, ref, env, ""); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, repo[strings.LastIndex(repo, "/")+1:]+".vsa.json")
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return ref, f
	}
	verifyArgs := func(ref name.Digest, extra ...string) []string {
		return append([]string{"vsa", "verify", "--key", pub, "--verifier-id", verifierID, "--subject", ref.String(),
			"--layout-digest", layoutDigest, "--insecure", "-o", "json"}, extra...)
	}
	report := func(out string) vsaReport {
		t.Helper()
		var r vsaReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return r
	}

	good, goodFile := image("team/app", key, vsa.Passed)
	r := report(mustCLI(t, verifyArgs(good)...))
	if !r.Verified || r.VerificationResult != vsa.Passed || r.PolicyDigest != layoutDigest || r.ResourceURI != "oci://"+host+"/team/app" {
		t.Errorf("report %+v", r)
	}
	if r := report(mustCLI(t, verifyArgs(good, "--file", goodFile)...)); !r.Verified || r.Source != goodFile {
		t.Errorf("--file: %+v", r)
	}

	forged, _ := image("team/forged", tenant, vsa.Passed)
	failed, _ := image("team/failed", key, vsa.Failed)
	for _, c := range []struct {
		name   string
		args   []string
		reason string
	}{
		{"signed by a tenant key", verifyArgs(forged), "signature"},
		{"FAILED", verifyArgs(failed), "policy"},
		{"older layout", verifyArgs(good, "--layout-digest", "sha256:4444444444444444444444444444444444444444444444444444444444444444"), "mismatch"},
		{"another verifier", append(verifyArgs(good), "--verifier-id", "https://evil.example/v"), "unauthorized"},
		{"too old", verifyArgs(good, "--max-age", "1ns"), "expired"},
	} {
		out, err := runCLI(t, c.args...)
		if err == nil {
			t.Errorf("%s: accepted:\n%s", c.name, out)
			continue
		}
		if r := report(out); r.Verified || r.Reason != c.reason {
			t.Errorf("%s: reason %q, want %q (%s)", c.name, r.Reason, c.reason, r.Error)
		}
	}
}

package rekor_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/rekor"
	"github.com/stepseal/stepseal/pkg/rekor/rekortest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

// TestBundleReferrerOfImage: a provenance about an image, logged in a real
// Rekor v2, is attached to the image in a real Distribution registry as a
// Sigstore bundle referrer; cosign verify-attestation --new-bundle-format
// finds and verifies it there, pkg/oci reads it back and Verify accepts
// it for the image's digest. Attaching it again adds no referrer; a
// bundle about another image is refused.
func TestBundleReferrerOfImage(t *testing.T) {
	ctx := context.Background()
	srv := rekortest.Start(t, "")
	host := testregistry.Start(t)
	c, err := oci.New(oci.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string) name.Digest {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := c.ParseReference(host + "/app:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		dr, err := c.ParseDigest(host + "/app@" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		return dr
	}
	ref, elsewhere := push("v1"), push("v2")
	s := signingtest.Signer(t)
	st, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": host + "/app", "digest": map[string]string{"sha256": strings.TrimPrefix(ref.DigestStr(), "sha256:")}}},
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate":     map[string]any{"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/buildtypes/test/v1"}},
	})
	env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, st, s)
	if err != nil {
		t.Fatal(err)
	}
	pubd, err := publisher(t, srv.Log).Publish(ctx, env, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := c.AttachBundle(ctx, ref, pubd.Bundle); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AttachBundle(ctx, elsewhere, pubd.Bundle); err == nil {
		t.Fatal("a bundle about another image was attached")
	}
	got, err := c.Bundles(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d bundle referrers, want 1", len(got))
	}
	if _, err := rekor.Verify(got[0], rekor.VerifyOptions{Key: s.Public(), Logs: []rekor.Log{srv.Log}, Subject: ref.DigestStr()}); err != nil {
		t.Fatal(err)
	}

	dir, pubPEM, trustedRoot := files(t, s, srv.Log)
	cmd := exec.Command(cosign(t), "verify-attestation", "--new-bundle-format", "--trusted-root", trustedRoot,
		"--key", pubPEM, "--allow-http-registry", "--type", "slsaprovenance1", ref.String())
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TUF_ROOT=" + filepath.Join(dir, ".sigstore")}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"payloadType":"application/vnd.in-toto+json"`) {
		t.Fatalf("cosign verify-attestation refused the bundle referrer: %v\n%s", err, out)
	}
	t.Logf("cosign: %s", lastLine(string(out)))
}

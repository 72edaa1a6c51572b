package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/rekor/rekortest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

// TestRekorAndExportCLI runs the README's "Rekor v2 and Sigstore bundles"
// and "Exporting for GUAC" commands against a real rekor-server-posix:
// trusted-root, publish (then publish again: the existing entry), verify
// against the artifact and against another one (refused, reason
// "mismatch"), publish --attach and verify --image on a real registry, and
// export of the run's directory.
func TestRekorAndExportCLI(t *testing.T) {
	srv := rekortest.Start(t, "")
	dir := t.TempDir()
	s := signingtest.Signer(t)
	pem, err := signing.MarshalPublicKeyPEM(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	blob := []byte("the artifact\n")
	sum := sha256.Sum256(blob)
	artifact := filepath.Join(dir, "app.tar")
	if err := os.WriteFile(artifact, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	st := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app.tar","digest":{"sha256":"` + hex.EncodeToString(sum[:]) +
		`"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://stepseal.dev/buildtypes/test/v1"},"runDetails":{"builder":{"id":"https://stepseal.dev/test"}}}}`
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, []byte(st), s)
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	envPath := filepath.Join(run, "provenance.json")
	raw, _ := json.Marshal(env)
	if err := os.WriteFile(envPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	trustedRoot := filepath.Join(dir, "trusted_root.json")
	mustCLI(t, "rekor", "trusted-root", "--log-key", srv.PubPEM, "--origin", srv.Log.Origin, "--out", trustedRoot)

	publish := []string{"rekor", "publish", "--url", srv.Log.URL, "--tiles-url", srv.Log.TilesURL, "--trusted-root", trustedRoot,
		"--envelope", envPath, "--key", pub, "-o", "json"}
	var first, again rekorReport
	if err := json.Unmarshal([]byte(mustCLI(t, publish...)), &first); err != nil || !first.Verified || first.Duplicate {
		t.Fatalf("publish: %+v %v", first, err)
	}
	if first.Bundle != filepath.Join(run, "provenance.sigstore.json") {
		t.Fatalf("bundle written to %s", first.Bundle)
	}
	if err := json.Unmarshal([]byte(mustCLI(t, publish...)), &again); err != nil || !again.Duplicate || again.LogIndex != first.LogIndex {
		t.Fatalf("publish again: %+v %v", again, err)
	}
	out := mustCLI(t, "rekor", "verify", "--bundle", first.Bundle, "--key", pub, "--trusted-root", trustedRoot, "--artifact", artifact)
	if !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify: %s", out)
	}
	other := strings.Repeat("0", 64)
	out, err = runCLI(t, "rekor", "verify", "--bundle", first.Bundle, "--key", pub, "--trusted-root", trustedRoot, "--subject", "sha256:"+other, "-o", "json")
	var refused rekorReport
	if err == nil || json.Unmarshal([]byte(out), &refused) != nil || refused.Verified || refused.Reason != "mismatch" {
		t.Fatalf("verify for another artifact: %v %s", err, out)
	}

	// On an image: publish --attach, then verify --image finds the bundle.
	host := testregistry.Start(t)
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	tag, err := c.ParseReference(host + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := oci.Push(context.Background(), img, tag, oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	ist := strings.Replace(st, hex.EncodeToString(sum[:]), strings.TrimPrefix(ref.DigestStr(), "sha256:"), 1)
	ienv, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, []byte(ist), s)
	if err != nil {
		t.Fatal(err)
	}
	ienvPath := filepath.Join(dir, "image-provenance.json")
	raw, _ = json.Marshal(ienv)
	if err := os.WriteFile(ienvPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "rekor", "publish", "--url", srv.Log.URL, "--tiles-url", srv.Log.TilesURL, "--trusted-root", trustedRoot,
		"--envelope", ienvPath, "--key", pub, "--attach", ref.String(), "--insecure")
	out = mustCLI(t, "rekor", "verify", "--image", ref.String(), "--insecure", "--key", pub, "--trusted-root", trustedRoot)
	if !strings.Contains(out, "Verified OK") || !strings.Contains(out, ref.DigestStr()) {
		t.Fatalf("verify --image: %s", out)
	}

	guac := filepath.Join(dir, "guac")
	out = mustCLI(t, "export", "--links", run, "--out", guac, "-o", "json")
	var res struct {
		Files []struct {
			Path, Kind string
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Files) != 2 {
		t.Fatalf("export: %v %s", err, out)
	}
	for _, f := range res.Files {
		if _, err := os.Stat(filepath.Join(guac, f.Path)); err != nil {
			t.Fatal(err)
		}
	}
}

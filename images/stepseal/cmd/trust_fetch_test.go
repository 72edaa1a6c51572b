package cmd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

// TestTrustHostedTargetsAndImages: a developer signs a layout file and an
// image by its registry manifest (--file, --image against the real
// registry), the publisher hosts the file, publishes and serves; a client
// fetches the layout checked against the role and resolves the image's
// digest and size.
func TestTrustHostedTargetsAndImages(t *testing.T) {
	keys := t.TempDir()
	for _, n := range []string{"root", "targets", "online", "alice"} {
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := signing.WriteKeyPair(keys, n, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	key := func(n string) string { return filepath.Join(keys, n) }
	host := testregistry.Start(t)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host+"/payments/api:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	manifest, _ := img.RawManifest()

	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	dir, pub := p("repo"), p("site")
	online := key("online.key")
	mustCLI(t, "trust", "init", dir, "--root-key", key("root.key"), "--targets-key", key("targets.key"), "--online-key", online)
	mustCLI(t, "trust", "delegate", dir, "--role", "payments", "--path", "oci/"+host+"/payments/*",
		"--path", "layouts/payments.layout", "--key", key("alice.pub"), "--sign-key", key("targets.key"), "--out", p("d.json"))
	mustCLI(t, "trust", "accept", dir, p("d.json"), "--online-key", online)

	layout := []byte(`{"signed":{"_type":"layout"}}`)
	if err := os.WriteFile(p("payments.layout"), layout, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "trust", "sign", dir, "--role", "payments", "--path", "layouts/payments.layout", "--file", p("payments.layout"),
		"--key", key("alice.key"), "--out", p("l.json"))
	// Before the release is accepted, the file is not hosted.
	if _, err := runCLI(t, "trust", "accept", dir, "--target-file", "layouts/payments.layout="+p("payments.layout")); !errors.Is(err, repo.ErrNotListed) {
		t.Fatalf("hosting an unlisted file: %v", err)
	}
	out := mustCLI(t, "-o", "json", "trust", "accept", dir, p("l.json"), "--online-key", online, "--target-file", "layouts/payments.layout="+p("payments.layout"))
	var rep struct {
		Roles       []repo.RoleVersion `json:"roles"`
		TargetFiles []string           `json:"targetFiles"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Roles) != 1 || strings.Join(rep.TargetFiles, ",") != "layouts/payments.layout" {
		t.Fatalf("accept report %s: %v", out, err)
	}
	// --image asks the registry; the path is oci/<registry>/<repo>:<tag>.
	mustCLI(t, "trust", "sign", dir, "--role", "payments", "--image", host+"/payments/api:v1", "--insecure",
		"--key", key("alice.key"), "--out", p("i.json"))
	mustCLI(t, "trust", "accept", dir, p("i.json"), "--online-key", online)
	mustCLI(t, "trust", "publish", dir, pub)
	srv := httptest.NewServer(repo.Handler(pub))
	defer srv.Close()

	cache := p("cache")
	client := []string{"--source", srv.URL + "/metadata", "--cache", cache, "--root", filepath.Join(pub, "metadata", "1.root.json")}
	out = mustCLI(t, append([]string{"trust", "fetch", "layouts/payments.layout", "--out", p("got.layout")}, client...)...)
	if got, _ := os.ReadFile(p("got.layout")); string(got) != string(layout) || !strings.Contains(out, "vouched for by payments v2") {
		t.Fatalf("fetch: %q\n%s", got, out)
	}
	out = mustCLI(t, append([]string{"-o", "json", "trust", "resolve", "oci/" + host + "/payments/api:v1"}, client...)...)
	var r trust.Resolution
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if "sha256:"+r.SHA256 != digest.String() || r.Length != int64(len(manifest)) || r.Role != "payments" || r.RoleVersion != 2 {
		t.Fatalf("image target %+v, want %s and %d bytes", r, digest, len(manifest))
	}
	// Offline, from the cache's copy.
	out = mustCLI(t, "trust", "fetch", "layouts/payments.layout", "--out", "-", "--cache", cache, "--offline")
	if out != string(layout) {
		t.Fatalf("offline fetch: %q", out)
	}
	// A tampered hosted file is refused, named, and not written.
	sum := sha256.Sum256(layout)
	hosted := filepath.Join(pub, "targets", "layouts", hex.EncodeToString(sum[:])+".payments.layout")
	if err := os.WriteFile(hosted, []byte(strings.Repeat("x", len(layout))), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, append([]string{"trust", "fetch", "layouts/payments.layout", "--out", p("bad.layout")}, "--source", srv.URL+"/metadata", "--cache", p("cache2"), "--root", filepath.Join(pub, "metadata", "1.root.json"))...)
	if !errors.Is(err, trust.ErrDigestMismatch) {
		t.Fatalf("tampered target file: %v", err)
	}
	if _, err := os.Stat(p("bad.layout")); !os.IsNotExist(err) {
		t.Fatal("a refused fetch wrote its output")
	}
}

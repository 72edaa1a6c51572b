package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/internal/testregistry"
	stepsealayout "github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/trust/repo"
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
	const verifierID = "https://stepseal.dev/controller/test"
	// The layout: step build.compile, signed by the builder's key or a
	// spare one; its owner's key file for `stepseal layout revoke-key`.
	keyFiles := func(n string) (signing.Signer, string, string) {
		k, err := signing.Generate(signing.ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub, err := signing.WriteKeyPair(dir, n, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := signing.NewSigner(k)
		if err != nil {
			t.Fatal(err)
		}
		return s, priv, pub
	}
	owner, ownerKey, _ := keyFiles("owner")
	builder, _, builderPub := keyFiles("builder")
	spare := newSigner()
	layout := signedLayout(t, owner, builder, spare)
	layoutDigest := store.Digest(layout)
	builderID, _ := builder.KeyID()
	linkSigner := builder
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
			PolicyDigest: map[string]string{"sha256": strings.TrimPrefix(layoutDigest, "sha256:")}, Result: result,
			Inputs: []vsa.Input{linkInput(t, linkSigner)}}, signer)
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

	// With --trust, the current layout is TUF's layouts/app.layout: the VSA
	// passes while it names that layout, and is refused once the owners
	// released another.
	tuf := trustRepoWithLayout(t, layout)
	trustArgs := func(ref name.Digest) []string {
		return []string{"vsa", "verify", "--key", pub, "--verifier-id", verifierID, "--subject", ref.String(), "--insecure", "-o", "json",
			"--trust", tuf.url, "--trust-cache", filepath.Join(dir, "cache"), "--trust-root", tuf.root, "--layout", "app"}
	}
	if r := report(mustCLI(t, trustArgs(good)...)); !r.Verified {
		t.Errorf("--trust: %+v", r)
	}
	linkSigner = spare
	spared, _ := image("team/spared", key, vsa.Passed)
	if r := report(mustCLI(t, trustArgs(spared)...)); !r.Verified {
		t.Errorf("--trust, inputs by the spare key: %+v", r)
	}
	// `admission check --trust` decides as the webhook would, by the same
	// checks.
	pol := filepath.Join(dir, "admission.yaml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- name: team
  images: ["127.0.0.1:*/team/**"]
  require: vsa
  vsa: {verifier: %q, maxAge: 1h, key: %q, layout: app}
`, verifierID, pem)), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(ref name.Digest) (string, error) {
		return runCLI(t, "admission", "check", ref.String(), "--policy", pol, "--platform", "eu", "--insecure",
			"--trust", tuf.url, "--trust-cache", filepath.Join(dir, "cache"), "--trust-root", tuf.root)
	}
	if out, err := check(good); err != nil {
		t.Fatalf("admission check --trust: %v\n%s", err, out)
	}

	// The owners revoke the builder's key (`stepseal layout revoke-key`)
	// and release the layout: a VSA whose link input the builder signed is
	// refused, naming the key, the step and the revoking TUF version;
	// one whose inputs the spare key signed is of an older layout.
	revoked := filepath.Join(dir, "revoked.layout")
	current := filepath.Join(dir, "current.layout")
	if err := os.WriteFile(current, layout, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "layout", "revoke-key", "--layout", current, "--key", builderPub, "--reason", "laptop stolen", "--owner-key", ownerKey, "--out", revoked)
	rl, err := os.ReadFile(revoked)
	if err != nil {
		t.Fatal(err)
	}
	tuf.release(t, rl)
	out, err := runCLI(t, trustArgs(good)...)
	if r := report(out); err == nil || r.Reason != "unauthorized" || !strings.Contains(r.Error, "in-toto key "+builderID) ||
		!strings.Contains(r.Error, `step "build.compile"`) || !strings.Contains(r.Error, "revoked by layout layouts/app.layout (TUF role app v2) (reason: laptop stolen)") {
		t.Errorf("--trust after the builder's key was revoked: %v\n%s", err, out)
	}
	if out, err := runCLI(t, trustArgs(spared)...); err == nil || report(out).Reason != "mismatch" {
		t.Errorf("--trust after a new layout: %v\n%s", err, out)
	}
	if out, err := check(good); err == nil || !strings.Contains(out, "in-toto key "+builderID) || !strings.Contains(out, "TUF role app v2") {
		t.Errorf("admission check --trust after the revocation: %v\n%s", err, out)
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

// signedLayout is a layout of one step, build.compile, whose links the
// functionaries' keys sign (threshold 1), signed by owner.
func signedLayout(t *testing.T, owner signing.Signer, functionaries ...signing.Signer) []byte {
	t.Helper()
	l := in_toto.Layout{Type: "layout", Expires: time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339), Keys: map[string]in_toto.Key{}, Inspect: []in_toto.Inspection{}}
	var ids []string
	for _, f := range functionaries {
		k, err := signing.InTotoKey(f.Public())
		if err != nil {
			t.Fatal(err)
		}
		l.Keys[k.KeyID] = k
		ids = append(ids, k.KeyID)
	}
	l.Steps = []in_toto.Step{{Type: "step", PubKeys: ids, Threshold: 1, SupplyChainItem: in_toto.SupplyChainItem{
		Name: "build.compile", ExpectedMaterials: [][]string{{"ALLOW", "*"}}, ExpectedProducts: [][]string{{"ALLOW", "*"}}}}}
	mb, err := stepsealayout.Sign(context.Background(), l, owner)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(mb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// linkInput is a VSA input: a link of build.compile signed by signer (a
// DSSE envelope here), with its signers as the controller reads them.
func linkInput(t *testing.T, signer signing.Signer) vsa.Input {
	t.Helper()
	id, _ := signer.KeyID()
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, []byte(`{"_type":"link"}`), signer)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(env)
	ids, err := vsa.SignerKeyIDs(data)
	if err != nil {
		t.Fatal(err)
	}
	return vsa.Input{URI: vsa.InputURI(seal.LinkName("build.compile", id), 1), Signers: ids,
		Digest: map[string]string{"sha256": strings.TrimPrefix(store.Digest(data), "sha256:")}}
}

// layoutRepo is a TUF repository, administered with the CLI and served over
// loopback HTTP, whose role "app" releases layouts/app.layout.
type layoutRepo struct {
	dir, site, keys, tmp, url, root string
}

func trustRepoWithLayout(t *testing.T, layout []byte) *layoutRepo {
	t.Helper()
	r := &layoutRepo{dir: filepath.Join(t.TempDir(), "repo"), site: t.TempDir(), keys: t.TempDir(), tmp: t.TempDir()}
	for _, n := range []string{"root", "targets", "online", "owner"} {
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := signing.WriteKeyPair(r.keys, n, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	mustCLI(t, "trust", "init", r.dir, "--root-key", r.key("root.key"), "--targets-key", r.key("targets.key"), "--online-key", r.key("online.key"))
	mustCLI(t, "trust", "delegate", r.dir, "--role", "app", "--path", "layouts/app.layout", "--key", r.key("owner.pub"),
		"--sign-key", r.key("targets.key"), "--out", filepath.Join(r.tmp, "d.json"))
	mustCLI(t, "trust", "accept", r.dir, filepath.Join(r.tmp, "d.json"), "--online-key", r.key("online.key"))
	r.release(t, layout)
	srv := httptest.NewServer(repo.Handler(r.site))
	t.Cleanup(srv.Close)
	r.url, r.root = srv.URL+"/metadata", filepath.Join(r.site, "metadata", "1.root.json")
	return r
}

func (r *layoutRepo) key(n string) string { return filepath.Join(r.keys, n) }

// release releases layout as layouts/app.layout and publishes.
func (r *layoutRepo) release(t *testing.T, layout []byte) {
	t.Helper()
	f, prop := filepath.Join(r.tmp, "app.layout"), filepath.Join(r.tmp, "l.json")
	if err := os.WriteFile(f, layout, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "trust", "sign", r.dir, "--role", "app", "--path", "layouts/app.layout", "--file", f, "--key", r.key("owner.key"), "--out", prop)
	mustCLI(t, "trust", "accept", r.dir, prop, "--online-key", r.key("online.key"), "--target-file", "layouts/app.layout="+f)
	mustCLI(t, "trust", "publish", r.dir, r.site)
}

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
)

// The publish tests drive the stepseal CLI against the real Distribution
// registry (Debian docker-registry) and check the result with cosign
// v2.6.5, crane and skopeo 1.9: what a platform team and an attacker would
// actually run.

const cosignPassword = "e2e-cosign-password"

// pubEnv is one registry with the keys and policies of a test.
type pubEnv struct {
	srv  *testregistry.Server
	host string
	dir  string
	// signer.key is cosign-encrypted (ECDSA P-256) so that cosign sign/attest
	// can use it too (an insider holding the publisher key); plain.key is a
	// PKCS#8 ECDSA key from `stepseal keys generate`.
	signer, signerPub, plain, plainPub string
	// Platform keys: prod-eu EC P-256, prod-us RSA 2048, other (EC P-256)
	// is a platform no rule names.
	key, pub map[string]string
	policy   string // v1: */demo/** -> [prod-eu, prod-us] encrypted; */public/** not encrypted
}

func newPubEnv(t *testing.T) *pubEnv {
	t.Helper()
	t.Setenv("COSIGN_PASSWORD", cosignPassword)
	e := &pubEnv{srv: testregistry.StartServer(t), dir: t.TempDir(), key: map[string]string{}, pub: map[string]string{}}
	e.host = e.srv.Host
	// Signed policy versions are recorded in the test's own state
	// directory, not the user's ~/.local/state.
	t.Setenv("XDG_STATE_HOME", e.path("state"))
	if r := ss(t, "keys", "generate", "--type", "ecdsa", "--cosign", "--out", e.dir, "--name", "signer"); r.code != 0 {
		t.Fatal(r)
	}
	if r := ss(t, "keys", "generate", "--type", "ecdsa", "--out", e.dir, "--name", "plain"); r.code != 0 {
		t.Fatal(r)
	}
	e.signer, e.signerPub = e.path("signer.key"), e.path("signer.pub")
	e.plain, e.plainPub = e.path("plain.key"), e.path("plain.pub")
	for n, k := range map[string]crypto.Signer{"prod-eu": ecKey(t), "prod-us": rsaKey(t), "other": ecKey(t)} {
		e.key[n], e.pub[n] = writeKeyPair(t, e.dir, n, k)
	}
	e.policy = e.writePolicy(t, "policy-v1.yaml", 1, "[prod-eu, prod-us]")
	return e
}

func (e *pubEnv) path(n string) string { return filepath.Join(e.dir, n) }

// writePolicy writes a platform policy naming prod-eu, prod-us and other,
// whose */demo/** rule lets demoPlatforms decrypt.
func (e *pubEnv) writePolicy(t *testing.T, file string, version int, demoPlatforms string) string {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: e2e, version: %d}
spec:
  platforms:
  - name: prod-eu
    publicKey: prod-eu.pub
    labels: {region: eu}
  - name: prod-us
    publicKey: prod-us.pub
  - name: other
    publicKey: other.pub
  artifacts:
  - match: "*/demo/**"
    platforms: %s
    encrypt: true
  - match: "*/public/**"
    platforms: []
    encrypt: false
`, version, demoPlatforms)
	p := e.path(file)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// publish runs stepseal publish with -o json and returns the digest reference.
func (e *pubEnv) publish(t *testing.T, src, ref string, extra ...string) string {
	t.Helper()
	args := append([]string{"publish", src, ref, "--key", e.signer, "--platform-policy", e.policy, "--insecure", "-o", "json"}, extra...)
	r := ss(t, args...)
	if r.code != 0 {
		t.Fatalf("publish %s: %s", ref, r)
	}
	var rep struct {
		Digest    string   `json:"digest"`
		Encrypted bool     `json:"encrypted"`
		Platforms []string `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !strings.Contains(rep.Digest, "@sha256:") {
		t.Fatalf("publish report: %v\n%s", err, r)
	}
	return rep.Digest
}

// pull runs stepseal pull as a platform; out must not exist.
func (e *pubEnv) pull(t *testing.T, ref, out, signerPub, platformKey string, extra ...string) result {
	t.Helper()
	args := append([]string{"pull", ref, "--out", out, "--key", signerPub, "--platform-policy", e.policy, "--insecure"}, extra...)
	if platformKey != "" {
		args = append(args, "--decryption-key", platformKey)
	}
	return ss(t, args...)
}

// tool runs cosign, crane or skopeo with HOME in the test's directory (no
// sigstore cache or docker config of the user's).
func (e *pubEnv) tool(t *testing.T, name string, args ...string) result {
	t.Helper()
	env := []string{"HOME=" + e.dir, "TUF_ROOT=" + e.path(".sigstore"), "COSIGN_PASSWORD=" + cosignPassword}
	if name == "skopeo" {
		args = append([]string{"--insecure-policy"}, args...)
	}
	return run(t, env, name, args...)
}

func (e *pubEnv) cosignVerify(t *testing.T, pub, digestRef string) result {
	t.Helper()
	return e.tool(t, "cosign", "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", digestRef)
}

func (e *pubEnv) cosignVerifyAttestation(t *testing.T, pub, digestRef string) result {
	t.Helper()
	return e.tool(t, "cosign", "verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance1", digestRef)
}

// tagDigest is what the registry's tag points at now ("" when there is no such tag).
func (e *pubEnv) tagDigest(t *testing.T, ref string) string {
	t.Helper()
	r := e.tool(t, "crane", "digest", "--insecure", ref)
	if r.code != 0 {
		return ""
	}
	return strings.TrimSpace(r.stdout)
}

// tags lists a repository's tags (none when the repository does not exist).
func (e *pubEnv) tags(t *testing.T, repo string) []string {
	t.Helper()
	r := e.tool(t, "crane", "ls", "--insecure", repo)
	if r.code != 0 {
		if strings.Contains(r.stderr, "NAME_UNKNOWN") {
			return nil
		}
		t.Fatalf("crane ls %s: %s", repo, r)
	}
	return strings.Fields(r.stdout)
}

// wantError checks the CLI failed with one line "stepseal: ..." containing want.
func wantError(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("accepted, want an error with %q:\n%s", want, r)
	}
	msg := strings.TrimSpace(r.stderr)
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "stepseal: ") {
		t.Fatalf("want a one-line error, got:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

// writeTree makes a small directory artifact. Directories are published as
// a standard tar layer, which skopeo can re-encrypt (it refuses to encrypt a
// file artifact's application/vnd.stepseal.file.layer.v1 layer).
func writeTree(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "b.sh"), []byte("#!/bin/sh\necho b\n"), 0o755)
	randomFile(t, filepath.Join(dir, "sub", "data.bin"), 300<<10)
	os.Symlink("a.txt", filepath.Join(dir, "link"))
	return dir
}

func digestOnly(ref string) string { return ref[strings.Index(ref, "@")+1:] }

func randomFile(t *testing.T, p string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeKeyPair(t *testing.T, dir, n string, k crypto.Signer) (string, string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, n+".key"), filepath.Join(dir, n+".pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// provenanceFor is an SLSA v1 provenance statement about digestHex, signed
// by the publisher key in cosign's scheme (as `cosign attest` would).
func provenanceFor(t *testing.T, keyPath, repo, digestHex string) []byte {
	t.Helper()
	k, err := signing.ParsePrivateKeyPEM(mustRead(t, keyPath), signing.StaticPass(cosignPassword))
	if err != nil {
		t.Fatal(err)
	}
	s, err := oci.CosignSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": repo, "digest": map[string]string{"sha256": digestHex}}},
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/e2e", "externalParameters": map[string]any{}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://stepseal.dev/e2e"}},
		},
	}
	payload, _ := json.Marshal(st)
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, payload, s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(env)
	return b
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// layerOfLayout returns the bytes of the single layer of the image skopeo
// wrote to an OCI layout.
func layerOfLayout(t *testing.T, dir string) []byte {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout %s: %v", dir, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil || len(m.Layers) != 1 {
		t.Fatalf("layout %s: want one layer: %v", dir, err)
	}
	if strings.Contains(string(m.Layers[0].MediaType), "encrypted") {
		t.Fatalf("layout %s: layer still encrypted (%s)", dir, m.Layers[0].MediaType)
	}
	return mustRead(t, filepath.Join(dir, "blobs", "sha256", m.Layers[0].Digest.Hex))
}

// TestPublishCosignCraneInterop: a file and a directory published encrypted
// are accepted by cosign verify and crane validate, and pulled back intact;
// a public artifact published with a provenance signed by the publisher key
// passes cosign verify-attestation; an attestation that is not about the
// pushed image is re-issued for it by the publisher.
func TestPublishCosignCraneInterop(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	content := randomFile(t, file, 3<<20+17)
	tree := writeTree(t, e.path("tree"))

	t.Run("file", func(t *testing.T) {
		// The plain PKCS#8 key from `stepseal keys generate` signs this one.
		r := ss(t, "publish", file, e.host+"/demo/file:v1", "--key", e.plain, "--platform-policy", e.policy, "--insecure", "-o", "json")
		if r.code != 0 {
			t.Fatal(r)
		}
		var rep struct {
			Digest    string   `json:"digest"`
			Encrypted bool     `json:"encrypted"`
			Platforms []string `json:"platforms"`
		}
		json.Unmarshal([]byte(r.stdout), &rep)
		if !rep.Encrypted || fmt.Sprint(rep.Platforms) != "[prod-eu prod-us]" {
			t.Fatalf("report: %+v", rep)
		}
		if got := e.tagDigest(t, e.host+"/demo/file:v1"); got != digestOnly(rep.Digest) {
			t.Fatalf("tag points at %q, published %s", got, rep.Digest)
		}
		if v := e.cosignVerify(t, e.plainPub, rep.Digest); v.code != 0 || !strings.Contains(v.stdout, digestOnly(rep.Digest)) {
			t.Fatalf("cosign verify: %s", v)
		}
		if v := e.cosignVerify(t, e.signerPub, rep.Digest); v.code == 0 {
			t.Fatalf("cosign verify with another key accepted it")
		}
		if v := e.tool(t, "crane", "validate", "--insecure", "--remote", rep.Digest); v.code != 0 || !strings.Contains(v.stdout, "PASS") {
			t.Fatalf("crane validate: %s", v)
		}
		out := e.path("pulled.bin")
		if p := e.pull(t, e.host+"/demo/file:v1", out, e.plainPub, e.key["prod-us"]); p.code != 0 {
			t.Fatal(p)
		}
		if !bytes.Equal(mustRead(t, out), content) {
			t.Fatal("pulled file differs from the published one")
		}
	})
	t.Run("directory", func(t *testing.T) {
		d := e.publish(t, tree, e.host+"/demo/tree:v1")
		if v := e.cosignVerify(t, e.signerPub, d); v.code != 0 {
			t.Fatalf("cosign verify: %s", v)
		}
		// No crane validate here: crane v0.22.1 fails on a directory
		// artifact either way — encrypted, "mismatched number of diffids:
		// len(ConfigFile.RootFS.DiffIDs)=1, len(layers)=0" (it skips
		// +encrypted layers); in the clear, "gzip: invalid header" (it
		// gunzips our uncompressed tar layer). File artifacts pass above.
		out := e.path("pulled-tree")
		if p := e.pull(t, d, out, e.signerPub, e.key["prod-eu"]); p.code != 0 {
			t.Fatal(p)
		}
		if r := run(t, nil, "diff", "-r", "--no-dereference", tree, out); r.code != 0 {
			t.Fatalf("pulled tree differs: %s", r)
		}
	})
	t.Run("attestation by the publisher", func(t *testing.T) {
		// A public (encrypt: false) file has a reproducible digest, so the
		// publisher can sign a provenance about the image before publishing.
		img, err := oci.FromFile(file)
		if err != nil {
			t.Fatal(err)
		}
		h, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		att := e.path("provenance-publisher.json")
		os.WriteFile(att, provenanceFor(t, e.signer, e.host+"/public/file", h.Hex), 0o644)
		d := e.publish(t, file, e.host+"/public/file:v1", "--attest", att)
		if digestOnly(d) != h.String() {
			t.Fatalf("published %s, expected %s", d, h)
		}
		if v := e.cosignVerifyAttestation(t, e.signerPub, d); v.code != 0 {
			t.Fatalf("cosign verify-attestation: %s", v)
		}
		if v := e.cosignVerify(t, e.signerPub, d); v.code != 0 {
			t.Fatalf("cosign verify: %s", v)
		}
		out := e.path("public.bin")
		if p := e.pull(t, e.host+"/public/file:v1", out, e.signerPub, ""); p.code != 0 || !bytes.Equal(mustRead(t, out), content) {
			t.Fatalf("pull of the public artifact: %s", p)
		}
	})
	t.Run("attestation about the file is re-issued for the image by the publisher", func(t *testing.T) {
		// stepseal run's provenance names the built archive, not the image
		// (whose digest, encrypted, exists only once published): publish
		// checks it is signed by the run's publisher key (--attest-key) and
		// about this archive, then re-issues the statement with the image
		// added to its subjects, signed by --key, so cosign
		// verify-attestation accepts it.
		runOut := e.path("run")
		if r := ss(t, "run", "examples/go-build", "--out", runOut, "-q"); r.code != 0 {
			t.Fatal(r)
		}
		archive := filepath.Join(runOut, "work", "workspaces", "dist", "app.tar.gz")
		r := ss(t, "publish", archive, e.host+"/demo/attested:v1", "--key", e.signer, "--platform-policy", e.policy, "--insecure", "-o", "json",
			"--attest", filepath.Join(runOut, "provenance.json"), "--attest-key", filepath.Join(runOut, "keys", "publisher.pub"))
		if r.code != 0 {
			t.Fatal(r)
		}
		var rep struct {
			Digest   string `json:"digest"`
			Reissued int    `json:"reissued"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Reissued != 1 {
			t.Fatalf("report %+v, %v: want 1 re-issued attestation\n%s", rep, err, r)
		}
		v := e.cosignVerifyAttestation(t, e.signerPub, rep.Digest)
		if v.code != 0 {
			t.Fatalf("cosign verify-attestation: %s", v)
		}
		for _, want := range []string{digestOnly(rep.Digest)[len("sha256:"):], "dist/app.tar.gz"} {
			if !strings.Contains(v.stdout, want) && !strings.Contains(decodedPayloads(t, v.stdout), want) {
				t.Errorf("re-issued statement does not name %q:\n%s", want, v.stdout)
			}
		}
	})
}

// decodedPayloads decodes the base64 DSSE payloads cosign prints, one JSON
// envelope per line.
func decodedPayloads(t *testing.T, out string) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var env struct {
			Payload string `json:"payload"`
		}
		if json.Unmarshal([]byte(line), &env) == nil && env.Payload != "" {
			if raw, err := base64.StdEncoding.DecodeString(env.Payload); err == nil {
				b.Write(raw)
			}
		}
	}
	return b.String()
}

// TestPublishSkopeoDecrypt: skopeo decrypts what we published with each
// authorized platform's key, to the plaintext bytes; with another
// platform's key it fails.
func TestPublishSkopeoDecrypt(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	content := randomFile(t, file, 2<<20+5)
	d := e.publish(t, file, e.host+"/demo/app:v1")
	for _, p := range []string{"prod-eu", "prod-us"} {
		out := e.path("oci-" + p)
		if r := e.tool(t, "skopeo", "copy", "--src-tls-verify=false", "--decryption-key", e.key[p], "docker://"+d, "oci:"+out+":v1"); r.code != 0 {
			t.Fatalf("skopeo with %s's key: %s", p, r)
		}
		if !bytes.Equal(layerOfLayout(t, out), content) {
			t.Fatalf("%s: skopeo's decrypted layer differs from the plaintext", p)
		}
	}
	r := e.tool(t, "skopeo", "copy", "--src-tls-verify=false", "--decryption-key", e.key["other"], "docker://"+d, "oci:"+e.path("oci-other")+":v1")
	if r.code == 0 || !strings.Contains(r.stderr, "decrypt") {
		t.Fatalf("skopeo with an unauthorized platform's key: %s", r)
	}
}

// TestPublishPullAttacks: the pull side of an encrypted artifact, and what an
// attacker with registry write access (or the publisher key) can try.
func TestPublishPullAttacks(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	content := randomFile(t, file, 1<<20+3)
	ref := e.host + "/demo/app:v1"
	d := e.publish(t, file, ref)

	t.Run("authorized platform", func(t *testing.T) {
		out := e.path("ok.bin")
		r := e.pull(t, ref, out, e.signerPub, e.key["prod-eu"], "-o", "json")
		if r.code != 0 {
			t.Fatal(r)
		}
		if !bytes.Equal(mustRead(t, out), content) {
			t.Fatal("pulled file differs")
		}
		var rep struct {
			Digest     string   `json:"digest"`
			Encrypted  bool     `json:"encrypted"`
			Recipients []string `json:"recipients"`
		}
		json.Unmarshal([]byte(r.stdout), &rep)
		if rep.Digest != d || !rep.Encrypted || len(rep.Recipients) != 2 {
			t.Fatalf("pull report %+v", rep)
		}
	})
	t.Run("unauthorized platform", func(t *testing.T) {
		out := e.path("other.bin")
		wantError(t, e.pull(t, ref, out, e.signerPub, e.key["other"]), "key is not a recipient")
		if _, err := os.Lstat(out); err == nil {
			t.Fatal("failed pull wrote --out")
		}
	})
	t.Run("wrong signer key", func(t *testing.T) {
		wantError(t, e.pull(t, ref, e.path("wrongsigner.bin"), e.plainPub, e.key["prod-eu"]),
			"signature verification failed: "+d+": none of 1 signatures verifies with key")
	})
	t.Run("extra recipient injected with skopeo and signed by an insider", func(t *testing.T) {
		// The insider holds prod-eu's key and the publisher key: decrypts,
		// re-encrypts to the same platforms plus "other", pushes to the
		// same tag and signs it with cosign.
		tree := writeTree(t, e.path("tree"))
		ref := e.host + "/demo/tree:v1"
		d := e.publish(t, tree, ref)
		if p := e.pull(t, ref, e.path("tree-ok"), e.signerPub, e.key["prod-us"]); p.code != 0 {
			t.Fatal(p)
		}
		stage := "oci:" + e.path("stage") + ":v1"
		if r := e.tool(t, "skopeo", "copy", "--src-tls-verify=false", "--decryption-key", e.key["prod-eu"], "docker://"+d, stage); r.code != 0 {
			t.Fatal(r)
		}
		if r := e.tool(t, "skopeo", "copy", "--dest-tls-verify=false", "--encryption-key", "jwe:"+e.pub["prod-eu"], "--encryption-key", "jwe:"+e.pub["prod-us"], "--encryption-key", "jwe:"+e.pub["other"], stage, "docker://"+ref); r.code != 0 {
			t.Fatal(r)
		}
		injected := e.tagDigest(t, ref)
		if injected == "" || injected == digestOnly(d) {
			t.Fatalf("tag after injection: %q", injected)
		}
		injRef := e.host + "/demo/tree@" + injected
		if r := e.tool(t, "cosign", "sign", "--key", e.signer, "--tlog-upload=false", "--allow-http-registry", "-y", injRef); r.code != 0 {
			t.Fatalf("cosign sign: %s", r)
		}
		// "other" really can decrypt it: the recipient check is what stops it.
		if r := e.tool(t, "skopeo", "copy", "--src-tls-verify=false", "--decryption-key", e.key["other"], "docker://"+injRef, "oci:"+e.path("inj-other")+":v1"); r.code != 0 {
			t.Fatalf("injected recipient cannot decrypt: %s", r)
		}
		for _, p := range []string{"prod-eu", "other"} {
			wantError(t, e.pull(t, ref, e.path("inj-"+p+".bin"), e.signerPub, e.key[p]),
				"recipients differ from platform policy: "+e.host+"/demo/tree layer 0 (sha256:", "extra: unidentified recipient")
		}
		r := ss(t, "crypt", "recipients", ref, "--platform-policy", e.policy, "--insecure", "-o", "json")
		if r.code == 0 || !strings.Contains(r.stdout, `"matchesPolicy": false`) {
			t.Fatalf("crypt recipients on the injected image: %s", r)
		}
	})
}

// TestPublishTagAndSignatureAttacks: verification is by digest and by the
// publisher's key, so moving the tag or copying a signature is caught.
func TestPublishTagAndSignatureAttacks(t *testing.T) {
	e := newPubEnv(t)
	file := writeTree(t, e.path("tree"))
	ref := e.host + "/demo/app:v1"
	a := e.publish(t, file, ref)

	// An unsigned image: what skopeo makes of A decrypted (same repository).
	stage := "oci:" + e.path("stage") + ":v1"
	if r := e.tool(t, "skopeo", "copy", "--src-tls-verify=false", "--decryption-key", e.key["prod-eu"], "docker://"+a, stage); r.code != 0 {
		t.Fatal(r)
	}
	t.Run("tag moved to an unsigned image", func(t *testing.T) {
		if r := e.tool(t, "skopeo", "copy", "--dest-tls-verify=false", "--encryption-key", "jwe:"+e.pub["prod-eu"], "--encryption-key", "jwe:"+e.pub["prod-us"], stage, "docker://"+ref); r.code != 0 {
			t.Fatal(r)
		}
		moved := e.tagDigest(t, ref)
		wantError(t, e.pull(t, ref, e.path("moved.bin"), e.signerPub, e.key["prod-eu"]),
			"no signature found: "+e.host+"/demo/app@"+moved+" has no signature")
	})
	t.Run("signature copied from another image", func(t *testing.T) {
		b := e.tagDigest(t, ref) // the unsigned image the tag now points at
		sigA := e.host + "/demo/app:" + strings.Replace(digestOnly(a), ":", "-", 1) + ".sig"
		sigB := e.host + "/demo/app:" + strings.Replace(b, ":", "-", 1) + ".sig"
		if r := e.tool(t, "crane", "copy", "--insecure", sigA, sigB); r.code != 0 {
			t.Fatal(r)
		}
		wantError(t, e.pull(t, ref, e.path("copied.bin"), e.signerPub, e.key["prod-eu"]),
			"signed payload is for another digest: "+e.host+"/demo/app@"+b+": signature by key", "is for "+digestOnly(a))
		if v := e.cosignVerify(t, e.signerPub, e.host+"/demo/app@"+b); v.code == 0 {
			t.Fatal("cosign accepted the copied signature")
		}
	})
	t.Run("tag moved to an image signed by another key", func(t *testing.T) {
		r := ss(t, "publish", file, ref, "--key", e.plain, "--platform-policy", e.policy, "--insecure")
		if r.code != 0 {
			t.Fatal(r)
		}
		wantError(t, e.pull(t, ref, e.path("other-signer.bin"), e.signerPub, e.key["prod-eu"]), "signature verification failed", "none of 1 signatures verifies with key")
		// The original digest still verifies: pin digests, not tags.
		if p := e.pull(t, a, e.path("pinned.bin"), e.signerPub, e.key["prod-eu"]); p.code != 0 {
			t.Fatal(p)
		}
	})
}

// TestPublishTamperedLayer: a layer modified in the registry's storage is
// caught on pull and nothing is written.
func TestPublishTamperedLayer(t *testing.T) {
	e := newPubEnv(t)
	for _, tc := range []struct{ name, repo string }{{"encrypted", "demo"}, {"public", "public"}} {
		t.Run(tc.name, func(t *testing.T) {
			file := e.path(tc.name + ".bin")
			randomFile(t, file, 256<<10)
			d := e.publish(t, file, e.host+"/"+tc.repo+"/tampered:v1")
			dr, err := name.NewDigest(d, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(dr)
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			blob := e.srv.BlobPath(m.Layers[0].Digest.String())
			data := mustRead(t, blob)
			data[len(data)/2] ^= 0x01
			if err := os.WriteFile(blob, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := e.path(tc.name + "-out")
			wantError(t, e.pull(t, d, out, e.signerPub, e.key["prod-eu"]), "content does not match its digest", m.Layers[0].Digest.String())
			if _, err := os.Lstat(out); err == nil {
				t.Fatal("pull of a tampered layer wrote --out")
			}
		})
	}
}

// TestPublishNoRule: an artifact no rule covers is refused; nothing is
// pushed or tagged.
func TestPublishNoRule(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	randomFile(t, file, 64<<10)
	r := ss(t, "publish", file, e.host+"/elsewhere/app:v1", "--key", e.signer, "--platform-policy", e.policy, "--insecure")
	wantError(t, r, `no platform policy rule for artifact: `+e.host+`/elsewhere/app (repository `+e.host+`/elsewhere/app) matches no artifact rule of policy "e2e" version 1`)
	if tags := e.tags(t, e.host+"/elsewhere/app"); len(tags) != 0 {
		t.Fatalf("refused publish left tags %v", tags)
	}
}

// TestPublishRotate: prod-us is removed from the policy; crypt rotate
// re-encrypts with fresh content keys, moves the tag, re-issues the
// signature and attestation for the new digest and deletes the old one.
func TestPublishRotate(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	content := randomFile(t, file, 1<<20+9)
	ref := e.host + "/demo/app:v1"
	old := e.publish(t, file, ref)
	// The publisher attests the published image with cosign.
	pred := e.path("predicate.json")
	os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://stepseal.dev/e2e","externalParameters":{}},"runDetails":{"builder":{"id":"https://stepseal.dev/e2e"}}}`), 0o644)
	if r := e.tool(t, "cosign", "attest", "--key", e.signer, "--tlog-upload=false", "--allow-http-registry", "-y", "--type", "slsaprovenance1", "--predicate", pred, old); r.code != 0 {
		t.Fatalf("cosign attest: %s", r)
	}
	// prod-us can pull it now.
	if p := e.pull(t, ref, e.path("us-before.bin"), e.signerPub, e.key["prod-us"]); p.code != 0 {
		t.Fatal(p)
	}
	v2 := e.writePolicy(t, "policy-v2.yaml", 2, "[prod-eu]")
	// Still the old image: its recipients now differ from policy v2.
	wantError(t, ss(t, "pull", ref, "--out", e.path("x"), "--key", e.signerPub, "--platform-policy", v2, "--decryption-key", e.key["prod-eu"], "--insecure"),
		"recipients differ from platform policy", "extra: recipient sha256:", "RSA-2048 is no platform of the rule")

	r := ss(t, "crypt", "rotate", ref, "--platform-policy", v2, "--decryption-key", e.key["prod-eu"], "--key", e.signer, "--insecure", "-o", "json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var rep struct {
		OldDigest, NewDigest string
		Platforms            []string
		Attestations         int
		OldDeleted           bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OldDigest != old || rep.NewDigest == old || fmt.Sprint(rep.Platforms) != "[prod-eu]" || rep.Attestations != 1 || !rep.OldDeleted {
		t.Fatalf("rotate report %+v", rep)
	}
	nd := rep.NewDigest
	if got := e.tagDigest(t, ref); got != digestOnly(nd) {
		t.Fatalf("tag points at %s, want %s", got, nd)
	}
	if v := e.cosignVerify(t, e.signerPub, nd); v.code != 0 {
		t.Fatalf("cosign verify of the rotated image: %s", v)
	}
	if v := e.cosignVerifyAttestation(t, e.signerPub, nd); v.code != 0 {
		t.Fatalf("cosign verify-attestation of the rotated image: %s", v)
	}
	if r := e.tool(t, "crane", "manifest", "--insecure", old); r.code == 0 || !strings.Contains(r.stderr, "MANIFEST_UNKNOWN") {
		t.Fatalf("old manifest still in the registry: %s", r)
	}
	pullV2 := func(out, key string) result {
		return ss(t, "pull", nd, "--out", out, "--key", e.signerPub, "--platform-policy", v2, "--decryption-key", key, "--insecure")
	}
	wantError(t, pullV2(e.path("us-after.bin"), e.key["prod-us"]), "key is not a recipient")
	if r := e.tool(t, "skopeo", "copy", "--src-tls-verify=false", "--decryption-key", e.key["prod-us"], "docker://"+nd, "oci:"+e.path("us-skopeo")+":v1"); r.code == 0 {
		t.Fatal("skopeo decrypted the rotated image with the removed platform's key")
	}
	if p := pullV2(e.path("eu-after.bin"), e.key["prod-eu"]); p.code != 0 || !bytes.Equal(mustRead(t, e.path("eu-after.bin")), content) {
		t.Fatalf("prod-eu after rotate: %s", p)
	}
	rr := ss(t, "crypt", "recipients", ref, "--platform-policy", v2, "--insecure", "-o", "json")
	if rr.code != 0 || !strings.Contains(rr.stdout, `"matchesPolicy": true`) || strings.Contains(rr.stdout, "prod-us") {
		t.Fatalf("crypt recipients after rotate: %s", rr)
	}
}

// TestPublishSignedPolicy: an owner-signed policy (`stepseal policy sign`)
// is accepted with --policy-key; modified after signing, unsigned, or signed
// by someone else, it is rejected.
func TestPublishSignedPolicy(t *testing.T) {
	e := newPubEnv(t)
	if r := ss(t, "keys", "generate", "--type", "ecdsa", "--out", e.dir, "--name", "owner"); r.code != 0 {
		t.Fatal(r)
	}
	if r := ss(t, "keys", "generate", "--type", "ed25519", "--out", e.dir, "--name", "intruder"); r.code != 0 {
		t.Fatal(r)
	}
	sign := func(keyFile, out string) string {
		p := e.path(out)
		if r := ss(t, "policy", "sign", e.policy, "--key", e.path(keyFile), "--out", p); r.code != 0 {
			t.Fatal(r)
		}
		return p
	}
	signed := sign("owner.key", "signed.json")
	byIntruder := sign("intruder.key", "intruder.json")
	// Modified after signing: the demo rule no longer encrypts.
	var env map[string]any
	json.Unmarshal(mustRead(t, signed), &env)
	payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	mod := bytes.Replace(payload, []byte(`"encrypt": true`), []byte(`"encrypt": false`), 1)
	if bytes.Equal(mod, payload) {
		t.Fatalf("could not modify the payload:\n%s", payload)
	}
	env["payload"] = base64.StdEncoding.EncodeToString(mod)
	modified := e.path("modified.json")
	b, _ := json.Marshal(env)
	os.WriteFile(modified, b, 0o644)

	file := e.path("app.bin")
	randomFile(t, file, 64<<10)
	owner := e.path("owner.pub")
	publish := func(tag, pol string) result {
		return ss(t, "publish", file, e.host+"/demo/app:"+tag, "--key", e.signer, "--platform-policy", pol, "--policy-key", owner, "--insecure")
	}
	if r := publish("signed", signed); r.code != 0 {
		t.Fatal(r)
	}
	if p := e.pull(t, e.host+"/demo/app:signed", e.path("signed.bin"), e.signerPub, e.key["prod-eu"], "--platform-policy", signed, "--policy-key", owner); p.code != 0 {
		t.Fatalf("pull with the signed policy: %s", p)
	}
	for _, c := range []struct{ name, pol, want string }{
		{"modified after signing", modified, "platform policy signature"},
		{"unsigned", e.policy, "platform policy signature"},
		{"signed by another key", byIntruder, "platform policy signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tag := strings.ReplaceAll(c.name, " ", "-")
			wantError(t, publish(tag, c.pol), c.want)
			if d := e.tagDigest(t, e.host+"/demo/app:"+tag); d != "" {
				t.Fatalf("rejected policy, but tag %s exists", tag)
			}
		})
	}
}

// TestPublishBadInput: one-line errors, non-zero exit, nothing tagged.
func TestPublishBadInput(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	randomFile(t, file, 4<<10)
	// A signer key of a type we do not sign with (Ed448).
	ed448 := e.path("ed448.key")
	if r := run(t, nil, "openssl", "genpkey", "-algorithm", "ed448", "-out", ed448); r.code != 0 {
		t.Fatal(r)
	}
	// A platform key JWE cannot encrypt to (ed25519).
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	os.WriteFile(e.path("ed.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	edPolicy := e.path("ed-policy.yaml")
	os.WriteFile(edPolicy, []byte("apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: ed}\nspec:\n  platforms:\n  - {name: edge, publicKey: ed.pub}\n  artifacts:\n  - {match: \"*/demo/**\", platforms: [edge], encrypt: true}\n"), 0o644)
	malformed := e.path("malformed.yaml")
	os.WriteFile(malformed, []byte("apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nspec: [unclosed\n"), 0o644)
	unknownField := e.path("unknown.yaml")
	os.WriteFile(unknownField, bytes.Replace(mustRead(t, e.policy), []byte("encrypt: true"), []byte("encrypted: true"), 1), 0o644)

	good := e.host + "/demo/bad:v1"
	cases := []struct {
		name string
		ref  string
		args []string
		want []string
	}{
		{"unreachable registry", "127.0.0.1:1/demo/bad:v1", nil, []string{"registry unreachable: registry 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"}},
		{"reference without tag", e.host + "/demo/bad", nil, []string{`invalid reference: "` + e.host + `/demo/bad" has neither tag nor digest`}},
		{"plain HTTP to a remote registry", "registry.example.com/demo/bad:v1", nil, []string{"insecure registry refused: registry registry.example.com is not on loopback"}},
		{"signer key of unsupported type", good, []string{"--key", ed448}, []string{"ed448.key: invalid key"}},
		{"platform key of unsupported type", good, []string{"--platform-policy", edPolicy}, []string{"invalid platform policy", "edge"}},
		{"malformed policy", good, []string{"--platform-policy", malformed}, []string{"invalid platform policy: " + malformed}},
		{"unknown policy field", good, []string{"--platform-policy", unknownField}, []string{"invalid platform policy", "encrypted"}},
		{"missing policy", good, []string{"--platform-policy", e.path("none.yaml")}, []string{"none.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"publish", file, c.ref, "--key", e.signer, "--platform-policy", e.policy, "--insecure"}
			args = append(args, c.args...) // later flags win
			wantError(t, ss(t, args...), c.want...)
		})
	}
	if tags := e.tags(t, e.host+"/demo/bad"); len(tags) != 0 {
		t.Fatalf("bad input left tags %v", tags)
	}
	t.Run("pull: unsupported decryption key", func(t *testing.T) {
		wantError(t, e.pull(t, good, e.path("x"), e.signerPub, ed448), "ed448.key: unsupported for encryption")
	})
}

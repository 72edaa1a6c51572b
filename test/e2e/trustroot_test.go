package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	tufrepo "github.com/stepseal/stepseal/pkg/trust/repo"
)

// trustRepo is a TUF repository the test administers with the CLI and
// serves over loopback HTTP.
type trustRepo struct {
	dir, site, keys, url, cache string
	srv                         *httptest.Server
	// replay, when set, answers requests for target files ending in its
	// key with its value (a mirror serving other bytes).
	replay atomic.Pointer[[2]string]
}

func newTrustRepo(t *testing.T) *trustRepo {
	t.Helper()
	base := t.TempDir()
	tr := &trustRepo{dir: filepath.Join(base, "repo"), site: filepath.Join(base, "site"), keys: filepath.Join(base, "keys"), cache: filepath.Join(base, "cache")}
	for _, n := range []string{"root", "targets", "online", "bob"} {
		if r := ss(t, "keys", "generate", "--type", "ecdsa", "--out", tr.keys, "--name", n); r.code != 0 {
			t.Fatal(r)
		}
	}
	tr.ok(t, "trust", "init", tr.dir, "--root-key", tr.key("root.key"), "--targets-key", tr.key("targets.key"), "--online-key", tr.key("online.key"))
	h := tufrepo.Handler(tr.site)
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rp := tr.replay.Load(); rp != nil && strings.HasSuffix(r.URL.Path, rp[0]) {
			w.Write([]byte(rp[1]))
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.url = tr.srv.URL + "/metadata"
	return tr
}

func (tr *trustRepo) key(n string) string { return filepath.Join(tr.keys, n) }

func (tr *trustRepo) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := ss(t, args...)
	if r.code != 0 {
		t.Fatal(r)
	}
	return r
}

// accept accepts proposals with the online key, hosts files (PATH=FILE),
// and publishes.
func (tr *trustRepo) accept(t *testing.T, proposals []string, files ...string) {
	t.Helper()
	args := append([]string{"trust", "accept", tr.dir}, proposals...)
	args = append(args, "--online-key", tr.key("online.key"))
	for _, f := range files {
		args = append(args, "--target-file", f)
	}
	tr.ok(t, args...)
	tr.ok(t, "trust", "publish", tr.dir, tr.site)
}

// flags are a verifier's --trust flags.
func (tr *trustRepo) flags() []string {
	return []string{"--trust", tr.url, "--trust-cache", tr.cache, "--trust-root", filepath.Join(tr.site, "metadata", "1.root.json")}
}

// TestVerifyTakesLayoutAndOwnersFromTUF: the go-build run's layout is
// released through TUF by the build team (whose TUF key is the layout
// owner's); stepseal verify --trust passes with no local layout or key;
// local trust flags are refused beside --trust; a layout signed by another
// team's developer, though the build role vouches for its bytes, fails on
// its signature (named with the TUF role and the in-toto key); a layout
// updated through TUF is used at the next refresh; a mirror replaying the
// old layout file is refused; a repository that cannot be reached fails
// closed.
func TestVerifyTakesLayoutAndOwnersFromTUF(t *testing.T) {
	out := copyDir(t, goBuild(t))
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--path", "keys/publisher.pub",
		"--key", filepath.Join(out, "keys", "owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d1.json"))
	tr.accept(t, []string{p("d1.json")})
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "billing", "--path", "layouts/billing.layout",
		"--key", tr.key("bob.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d2.json"))
	tr.accept(t, []string{p("d2.json")})
	layout := filepath.Join(out, "root.layout")
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", layout,
		"--key", filepath.Join(out, "keys", "owner.key"), "--out", p("l1.json"))
	tr.accept(t, []string{p("l1.json")}, "layouts/go-build.layout="+layout)

	artifact := "dist/app.tar.gz=" + filepath.Join(out, "work", "workspaces", "dist", "app.tar.gz")
	verify := func(extra ...string) result {
		args := append([]string{"verify", "--layout", "go-build", "--links", filepath.Join(out, "links"), "--artifact", artifact, "-o", "json"}, tr.flags()...)
		return ss(t, append(args, extra...)...)
	}
	if r := verify(); r.code != 0 {
		t.Fatalf("verify --trust: %s", r)
	}
	// Beside --trust, a local layout key is refused, not combined.
	if r := verify("--layout-key", filepath.Join(out, "keys", "owner.pub")); r.code == 0 || !strings.Contains(r.stderr, "--layout-key reads a local file") {
		t.Fatalf("--layout-key with --trust: %s", r)
	}
	// Bob (billing) cannot release the build team's layout: refused before
	// anything is signed.
	if r := ss(t, "trust", "sign", tr.dir, "--role", "billing", "--path", "layouts/go-build.layout", "--file", layout,
		"--key", tr.key("bob.key"), "--out", p("x.json")); r.code == 0 || !strings.Contains(r.stderr, "outside") {
		t.Fatalf("billing signing the build layout: %s", r)
	}
	// A layout signed by Bob, vouched for by the build role (an insider
	// or a mistake): its owners are the build role's keys, so it fails.
	bobLayout := p("bob.layout")
	unsigned := readJSON(t, layout)
	unsigned["signatures"] = []any{}
	writeJSON(t, p("unsigned.layout"), unsigned)
	if r := run(t, nil, inToto(t), "sign", "-f", p("unsigned.layout"), "-k", tr.key("bob.key"), "-o", bobLayout); r.code != 0 {
		t.Fatal(r)
	}
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", bobLayout,
		"--key", filepath.Join(out, "keys", "owner.key"), "--out", p("l2.json"))
	tr.accept(t, []string{p("l2.json")}, "layouts/go-build.layout="+bobLayout)
	expectRejected(t, verify(), "layout-signature", "layouts/go-build.layout (TUF role build v2)", "owner in-toto key")

	// The good layout again, through TUF: used at the next refresh.
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", layout,
		"--key", filepath.Join(out, "keys", "owner.key"), "--out", p("l3.json"))
	tr.accept(t, []string{p("l3.json")})
	if r := verify(); r.code != 0 {
		t.Fatalf("verify after the layout update: %s", r)
	}
	// A mirror replaying Bob's layout bytes for the current file: refused
	// by TUF (the role vouches for other bytes), with a fresh cache.
	bob, _ := os.ReadFile(bobLayout)
	tr.replay.Store(&[2]string{".go-build.layout", string(bob)})
	tr.cache = filepath.Join(tmp, "cache2")
	// (Bob's layout is longer: refused after the vouched length, before
	// hashing; a file of the same length is a digest mismatch, tested in
	// pkg/trust/repo.)
	if r := verify(); r.code == 0 || !strings.Contains(r.stderr, "too large") || !strings.Contains(r.stderr, `role "build" v3`) {
		t.Fatalf("replayed layout: %s", r)
	}
	tr.replay.Store(nil)
	// An unreachable repository: fail closed, no fallback.
	tr.url = "http://127.0.0.1:1/metadata"
	tr.cache = filepath.Join(tmp, "cache3")
	if r := verify(); r.code == 0 || !strings.Contains(r.stderr, "unavailable") {
		t.Fatalf("unreachable TUF repository: %s", r)
	}
}

// TestPullTakesDigestAndPublisherFromTUF: an artifact published to the
// real registry and released through TUF by its tag; pull --trust takes
// the digest the role vouches for and the publisher's key from TUF. A tag
// moved in the registry to another (validly signed) artifact is refused,
// naming both digests; the publisher key target removed from TUF makes
// pull refuse the artifact.
func TestPullTakesDigestAndPublisherFromTUF(t *testing.T) {
	e := newPubEnv(t)
	out := goBuild(t)
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	owner := filepath.Join(out, "keys", "owner.key")
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "keys/publisher.pub", "--path", "policies/platforms.policy",
		"--path", "oci/"+e.host+"/public/*", "--key", filepath.Join(out, "keys", "owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d.json"))
	tr.accept(t, []string{p("d.json")})
	// The platform policy, signed by the build role's key, released as a target.
	tr.ok(t, "policy", "sign", e.policy, "--key", owner, "--out", p("platforms.policy"))
	ref := e.host + "/public/app:v1"
	file := p("app.txt")
	os.WriteFile(file, []byte("app v1"), 0o644)
	e.publish(t, file, ref)
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "keys/publisher.pub", "--file", e.signerPub, "--key", owner, "--out", p("k.json"))
	tr.accept(t, []string{p("k.json")}, "keys/publisher.pub="+e.signerPub)
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "policies/platforms.policy", "--file", p("platforms.policy"), "--key", owner, "--out", p("pol.json"))
	tr.accept(t, []string{p("pol.json")}, "policies/platforms.policy="+p("platforms.policy"))
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--image", ref, "--insecure", "--key", owner, "--out", p("i.json"))
	tr.accept(t, []string{p("i.json")})

	pull := func(dst string, extra ...string) result {
		args := append([]string{"pull", ref, "--out", dst, "--key", "publisher", "--platform-policy", "platforms", "--insecure", "-o", "json"}, tr.flags()...)
		return ss(t, append(args, extra...)...)
	}
	r := pull(p("got1"))
	if r.code != 0 {
		t.Fatalf("pull --trust: %s", r)
	}
	var rep struct {
		Trust string `json:"trust"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !strings.Contains(rep.Trust, "TUF role build v") {
		t.Fatalf("pull report: %v %s", err, r)
	}
	if got, _ := os.ReadFile(p("got1")); string(got) != "app v1" {
		t.Fatalf("pulled %q", got)
	}
	// Beside --trust, a local policy key is refused.
	if r := pull(p("x"), "--policy-key", e.signerPub); r.code == 0 || !strings.Contains(r.stderr, "--policy-key reads a local file") {
		t.Fatalf("--policy-key with --trust: %s", r)
	}
	// The tag moved to another artifact, signed by the same publisher:
	// not what TUF vouches for.
	os.WriteFile(file, []byte("app v2, not released"), 0o644)
	moved := e.publish(t, file, ref)
	r = pull(p("got2"))
	if r.code == 0 || !strings.Contains(r.stderr, "digest mismatch") || !strings.Contains(r.stderr, strings.SplitN(moved, "@", 2)[1]) {
		t.Fatalf("moved tag: %s", r)
	}
	if _, err := os.Stat(p("got2")); !os.IsNotExist(err) {
		t.Fatal("a refused pull wrote its output")
	}
	// The release of the new digest makes it pullable; then the publisher
	// key is withdrawn from TUF and nothing it signed is pulled.
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--image", ref, "--insecure", "--key", owner, "--out", p("i2.json"))
	tr.accept(t, []string{p("i2.json")})
	if r := pull(p("got3")); r.code != 0 {
		t.Fatalf("pull of the new release: %s", r)
	}
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--remove", "keys/publisher.pub", "--key", owner, "--out", p("rm.json"))
	tr.accept(t, []string{p("rm.json")})
	if r := pull(p("got4")); r.code == 0 || !strings.Contains(r.stderr, "not listed") || !strings.Contains(r.stderr, "keys/publisher.pub") {
		t.Fatalf("pull after the publisher key was withdrawn: %s", r)
	}
}

// TestPlatformRevocationThroughTUF: a platform removed from the policy
// through TUF — trust status --recipients lists the released artifact
// still encrypted to it; crypt rotate --trust re-encrypts it to the
// current policy; once the new digest is released the audit is clean, and
// the removed platform can no longer decrypt what TUF vouches for.
func TestPlatformRevocationThroughTUF(t *testing.T) {
	e := newPubEnv(t)
	out := goBuild(t)
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	owner := filepath.Join(out, "keys", "owner.key")
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "keys/publisher.pub", "--path", "policies/platforms.policy",
		"--path", "oci/"+e.host+"/demo/*", "--key", filepath.Join(out, "keys", "owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d.json"))
	tr.accept(t, []string{p("d.json")})
	release := func(file, target string) {
		t.Helper()
		tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", target, "--file", file, "--key", owner, "--out", p("r.json"))
		tr.accept(t, []string{p("r.json")}, target+"="+file)
	}
	tr.ok(t, "policy", "sign", e.policy, "--key", owner, "--out", p("v1.policy"))
	release(p("v1.policy"), "policies/platforms.policy")
	release(e.signerPub, "keys/publisher.pub")

	// Published with the policy TUF vouches for, then released.
	ref := e.host + "/demo/app:v1"
	os.WriteFile(p("app.txt"), []byte("secret app"), 0o644)
	if r := ss(t, append([]string{"publish", p("app.txt"), ref, "--key", e.signer, "--platform-policy", "platforms", "--insecure"}, tr.flags()...)...); r.code != 0 {
		t.Fatalf("publish --trust: %s", r)
	}
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--image", ref, "--insecure", "--key", owner, "--out", p("i.json"))
	tr.accept(t, []string{p("i.json")})
	status := func() result {
		return ss(t, "trust", "status", "--source", tr.url, "--cache", tr.cache, "--root", filepath.Join(tr.site, "metadata", "1.root.json"), "--recipients", "platforms", "--insecure")
	}
	if r := status(); r.code != 0 || !strings.Contains(r.stdout, "encrypted to exactly prod-eu, prod-us") {
		t.Fatalf("audit before the revocation: %s", r)
	}

	// prod-us is removed from the demo rule, through TUF.
	v2 := e.writePolicy(t, "policy-v2.yaml", 2, "[prod-eu]")
	tr.ok(t, "policy", "sign", v2, "--key", owner, "--out", p("v2.policy"))
	release(p("v2.policy"), "policies/platforms.policy")
	r := status()
	if r.code == 0 || !strings.Contains(r.stdout, "STALE oci/"+e.host+"/demo/app:v1") || !strings.Contains(r.stdout, "released artifacts encrypted to other platforms") {
		t.Fatalf("audit after removing prod-us: %s", r)
	}

	// Re-encrypted to the current policy (from TUF), then released.
	if r := ss(t, append([]string{"crypt", "rotate", ref, "--key", e.signer, "--decryption-key", e.key["prod-eu"], "--platform-policy", "platforms", "--insecure"}, tr.flags()...)...); r.code != 0 {
		t.Fatalf("crypt rotate --trust: %s", r)
	}
	// Until the new digest is released, TUF vouches for the old one: pull
	// refuses the moved tag.
	pull := func(dst, key string) result {
		return ss(t, append([]string{"pull", ref, "--out", dst, "--key", "publisher", "--platform-policy", "platforms", "--decryption-key", key, "--insecure"}, tr.flags()...)...)
	}
	if r := pull(p("x"), e.key["prod-eu"]); r.code == 0 || !strings.Contains(r.stderr, "digest mismatch") {
		t.Fatalf("pull before the new release: %s", r)
	}
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--image", ref, "--insecure", "--key", owner, "--out", p("i2.json"))
	tr.accept(t, []string{p("i2.json")})
	if r := status(); r.code != 0 || !strings.Contains(r.stdout, "encrypted to exactly prod-eu\n") {
		t.Fatalf("audit after rotate and release: %s", r)
	}
	if r := pull(p("eu"), e.key["prod-eu"]); r.code != 0 {
		t.Fatalf("prod-eu pull: %s", r)
	}
	if r := pull(p("us"), e.key["prod-us"]); r.code == 0 {
		t.Fatalf("the removed platform decrypted the new release: %s", r)
	}
}

// TestRunVerifiesAgainstTUFLayout: stepseal run --trust verifies the run
// against the layout the pipeline's owners released through TUF
// (layouts/<pipeline>.layout), not the one it generates: with the owners'
// released layout it passes; with a layout another team's key signed, the
// run is refused on the layout's signature; with no layout released for
// the pipeline, nothing runs.
func TestRunVerifiesAgainstTUFLayout(t *testing.T) {
	first := goBuild(t)
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	keys := filepath.Join(first, "keys")
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "layouts/go-build.layout",
		"--key", filepath.Join(keys, "owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d.json"))
	tr.accept(t, []string{p("d.json")})
	// No layout released yet: refused before any step runs.
	r := ss(t, append([]string{"run", "examples/go-build", "--out", p("none"), "--keys", keys, "-q"}, tr.flags()...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "layouts/go-build.layout") {
		t.Fatalf("run with no released layout: %s", r)
	}
	if _, err := os.Stat(p("none")); !os.IsNotExist(err) {
		t.Fatal("a run refused before it started left its output")
	}
	layout := filepath.Join(first, "root.layout")
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", layout,
		"--key", filepath.Join(keys, "owner.key"), "--out", p("l.json"))
	tr.accept(t, []string{p("l.json")}, "layouts/go-build.layout="+layout)
	r = ss(t, append([]string{"run", "examples/go-build", "--out", p("second"), "--keys", keys, "-q"}, tr.flags()...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "verifying layouts/go-build.layout (TUF role build v1)") || !strings.Contains(r.stdout, "VERIFICATION PASSED") {
		t.Fatalf("run --trust: %s", r)
	}
	// A layout signed by another team's developer, vouched for by the role.
	unsigned := readJSON(t, layout)
	unsigned["signatures"] = []any{}
	writeJSON(t, p("unsigned.layout"), unsigned)
	if r := run(t, nil, inToto(t), "sign", "-f", p("unsigned.layout"), "-k", tr.key("bob.key"), "-o", p("bob.layout")); r.code != 0 {
		t.Fatal(r)
	}
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", p("bob.layout"),
		"--key", filepath.Join(keys, "owner.key"), "--out", p("l2.json"))
	tr.accept(t, []string{p("l2.json")}, "layouts/go-build.layout="+p("bob.layout"))
	r = ss(t, append([]string{"run", "examples/go-build", "--out", p("third"), "--keys", keys, "-q"}, tr.flags()...)...)
	if r.code == 0 || !strings.Contains(r.stdout, "layout signature of layouts/go-build.layout (TUF role build v2)") {
		t.Fatalf("run against a layout signed by another key: %s", r)
	}
}

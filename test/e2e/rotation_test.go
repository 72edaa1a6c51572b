package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// rotation is a copy of the go-build run whose builder key was rotated out
// for builder2, through `stepseal layout rotate-key`.
type rotation struct {
	out, layout string
	oldID       string // the builder's in-toto key ID
	size        uint64 // the log's tree size at the rotation
}

func rotate(t *testing.T) rotation {
	t.Helper()
	out := copyDir(t, goBuild(t))
	p := func(n string) string { return filepath.Join(out, n) }
	if r := ss(t, "keys", "generate", "--out", p("keys"), "--name", "builder2"); r.code != 0 {
		t.Fatal(r)
	}
	rot := rotation{out: out, layout: p("rotated.layout"), oldID: keyID(t, p("keys/builder.pub"))}
	r := ss(t, "layout", "rotate-key", "--layout", p("root.layout"), "--old", p("keys/builder.pub"), "--new", p("keys/builder2.pub"),
		"--log", p("store"), "--log-key", p("log.pub"), "--owner-key", p("keys/owner.key"), "--out", rot.layout, "-o", "json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var rep struct {
		KeyID   string `json:"keyid"`
		LogSize uint64 `json:"logSize"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.KeyID != rot.oldID || rep.LogSize == 0 {
		t.Fatalf("rotate-key report %+v, %v:\n%s", rep, err, r)
	}
	rot.size = rep.LogSize
	return rot
}

func (r rotation) p(n string) string { return filepath.Join(r.out, n) }

// verify runs stepseal verify of the run's links against layout.
func (r rotation) verify(t *testing.T, layout string, extra ...string) result {
	t.Helper()
	args := append([]string{"verify", "--layout", layout, "--layout-key", r.p("keys/owner.pub"), "--links", r.p("links"), "-o", "json",
		"--artifact", "dist/app.tar.gz=" + r.p("work/workspaces/dist/app.tar.gz")}, extra...)
	return ss(t, args...)
}

func (r rotation) withLog(t *testing.T, layout string, extra ...string) result {
	t.Helper()
	return r.verify(t, layout, append([]string{"--log", r.p("store"), "--log-key", r.p("log.pub")}, extra...)...)
}

func inTotoVerifyLayout(t *testing.T, dir, layout string) result {
	t.Helper()
	return run(t, nil, inToto(t), "verify", "-l", layout, "-d", filepath.Join(dir, "links"), "-k", filepath.Join(dir, "keys", "owner.pub"))
}

// TestRotatedKeyKeepsOldRunValidWithLogEvidence: the builder's key is
// rotated out; the run it signed before still verifies with the log's
// evidence, and in-toto-golang (which has no log) still accepts it. Without
// evidence, with a log changed on disk, or with a log under another key,
// the builder's link is refused, naming the step, the in-toto key and the
// log size at the rotation.
func TestRotatedKeyKeepsOldRunValidWithLogEvidence(t *testing.T) {
	rot := rotate(t)
	if r := rot.withLog(t, rot.layout); r.code != 0 {
		t.Fatalf("the run signed before the rotation is refused with the log's evidence:\n%s", r)
	}
	if r := inTotoVerifyLayout(t, rot.out, rot.layout); r.code != 0 {
		t.Fatalf("in-toto-golang refuses the rotated layout:\n%s", r)
	}
	at := fmt.Sprintf("rotated out at log size %d", rot.size)
	expectRejected(t, rot.verify(t, rot.layout), "rotated-key", `step "build.compile"`, "in-toto key "+rot.oldID[:8], at, "rotated.layout", "no log evidence")

	// Another log's key: not the log the layout names.
	_, vkey, err := tlog.GenerateKey("stepseal.dev/local")
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(other, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expectRejected(t, rot.verify(t, rot.layout, "--log", rot.p("store"), "--log-key", other),
		"rotated-key", `step "build.compile"`, rot.oldID[:8], at, "not the log the layout names")

	// The builder link's record changed in the log's entry bundle (one
	// byte of its name): its inclusion proof fails.
	tampered := copyDir(t, rot.out)
	tamperLogged(t, filepath.Join(tampered, "store", "log"), "build.compile."+rot.oldID[:8]+".link")
	tr := rotation{out: tampered, layout: filepath.Join(tampered, "rotated.layout"), oldID: rot.oldID, size: rot.size}
	expectRejected(t, tr.withLog(t, tr.layout), "rotated-key", `step "build.compile"`, rot.oldID[:8], at, "inclusion proof failed")
}

// tamperLogged flips the case of one letter of name in every entry bundle
// of the log that holds it (the partial bundles of each tree size too).
func tamperLogged(t *testing.T, logDir, name string) {
	t.Helper()
	done := false
	err := filepath.WalkDir(filepath.Join(logDir, "tile", "entries"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if i := bytes.Index(b, []byte(name)); i >= 0 {
			b[i] ^= 0x20
			done = true
			return os.WriteFile(p, b, 0o644)
		}
		return nil
	})
	if err != nil || !done {
		t.Fatalf("no entry bundle holds %s: %v", name, err)
	}
}

// TestRotatedKeyLinkSignedAfterRotationRefused: the old key signs a new
// link after the rotation and it is logged: its index is at or past the
// log size the layout recorded, so it is refused. The new key's links
// need no evidence.
func TestRotatedKeyLinkSignedAfterRotationRefused(t *testing.T) {
	rot := rotate(t)
	link := linkFile(t, rot.out, "build.compile")
	v := readJSON(t, link)
	signed := v["signed"].(map[string]any)
	signed["byproducts"].(map[string]any)["stdout"] = "built again, after the rotation"
	body, _ := json.Marshal(signed)
	os.Remove(link)
	resign(t, rot.out, "builder", "build.compile", body)
	data, err := os.ReadFile(link)
	if err != nil {
		t.Fatal(err)
	}
	logLink(t, rot.out, filepath.Base(link), data)
	expectRejected(t, rot.withLog(t, rot.layout), "rotated-key", `step "build.compile"`, "in-toto key "+rot.oldID[:8],
		fmt.Sprintf("rotated out at log size %d", rot.size), fmt.Sprintf("at index %d, at or after the rotation", rot.size))

	// The same link body signed by the new key: accepted, with no log.
	os.Remove(link)
	resign(t, rot.out, "builder2", "build.compile", body)
	if r := rot.verify(t, rot.layout); r.code != 0 {
		t.Fatalf("the new key's link is refused:\n%s", r)
	}
	if r := inTotoVerifyLayout(t, rot.out, rot.layout); r.code != 0 {
		t.Fatalf("in-toto-golang refuses the new key's link:\n%s", r)
	}
}

// logLink appends a link to the run's store (its log), as a later run
// would: the log gives it the next index.
func logLink(t *testing.T, out, name string, data []byte) {
	t.Helper()
	ctx := context.Background()
	skey, err := os.ReadFile(filepath.Join(out, "log-key", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlogstore.Open(ctx, filepath.Join(out, "store"), k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, store.Entry{Kind: store.KindLink, Name: name, RunID: "after-rotation", Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRevokedKeyRefusesEverythingItSigned: revoking the rotated-out
// builder key refuses the old run even with the log's evidence, naming the
// key, the layout and the reason; in-toto-golang refuses it too. Revoking
// a key that is a step's only one is refused before anything is signed.
func TestRevokedKeyRefusesEverythingItSigned(t *testing.T) {
	rot := rotate(t)
	revoked := rot.p("revoked.layout")
	if r := ss(t, "layout", "revoke-key", "--layout", rot.layout, "--key", rot.p("keys/builder.pub"), "--reason", "laptop stolen",
		"--owner-key", rot.p("keys/owner.key"), "--out", revoked); r.code != 0 {
		t.Fatal(r)
	}
	expectRejected(t, rot.withLog(t, revoked), "revoked-key", `step "build.compile"`, "in-toto key "+rot.oldID[:8], "revoked by layout "+revoked, "laptop stolen")
	if r := inTotoVerifyLayout(t, rot.out, revoked); r.code == 0 {
		t.Fatalf("in-toto-golang accepts a revoked key's link:\n%s", r)
	}
	// By key ID, on the original layout: the builder is build.compile's
	// only key, so the revocation would leave the step unperformable.
	r := ss(t, "layout", "revoke-key", "--layout", rot.p("root.layout"), "--key", rot.oldID, "--reason", "x",
		"--owner-key", rot.p("keys/owner.key"), "--out", rot.p("r2.layout"))
	if r.code == 0 || !strings.Contains(r.stderr, "leaves too few keys for step(s) build.compile") {
		t.Fatalf("revoking the only key: %s", r)
	}
	if _, err := os.Stat(rot.p("r2.layout")); err == nil {
		t.Fatal("a layout was written")
	}
	// A layout no given owner signed is not re-signed.
	r = ss(t, "layout", "revoke-key", "--layout", rot.layout, "--key", rot.oldID, "--reason", "x",
		"--owner-key", rot.p("keys/tester.key"), "--out", rot.p("r3.layout"))
	if r.code == 0 || !strings.Contains(r.stderr, "no valid signature by any owner key given") {
		t.Fatalf("re-signing another's layout: %s", r)
	}
}

// TestRotationAndRevocationReleasedThroughTUF: the rotated layout and the
// log's key are TUF targets of the build role; verify --trust takes both
// from TUF and passes with the log's evidence; the revoking layout,
// released next, is refused naming the TUF role and version.
func TestRotationAndRevocationReleasedThroughTUF(t *testing.T) {
	rot := rotate(t)
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	owner := rot.p("keys/owner.key")
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--path", "keys/log.pub",
		"--key", rot.p("keys/owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d.json"))
	tr.accept(t, []string{p("d.json")})
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "keys/log.pub", "--file", rot.p("log.pub"), "--key", owner, "--out", p("k.json"))
	tr.accept(t, []string{p("k.json")}, "keys/log.pub="+rot.p("log.pub"))
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", rot.layout, "--key", owner, "--out", p("l1.json"))
	tr.accept(t, []string{p("l1.json")}, "layouts/go-build.layout="+rot.layout)
	verify := func(extra ...string) result {
		args := append([]string{"verify", "--layout", "go-build", "--links", rot.p("links"), "-o", "json",
			"--artifact", "dist/app.tar.gz=" + rot.p("work/workspaces/dist/app.tar.gz")}, tr.flags()...)
		return ss(t, append(args, extra...)...)
	}
	if r := verify("--log", rot.p("store"), "--log-key", "log"); r.code != 0 {
		t.Fatalf("verify --trust with the log's evidence:\n%s", r)
	}
	expectRejected(t, verify(), "rotated-key", `step "build.compile"`, rot.oldID[:8], "layouts/go-build.layout (TUF role build v")

	revoked := p("revoked.layout")
	if r := ss(t, "layout", "revoke-key", "--layout", rot.layout, "--key", rot.oldID, "--reason", "key leaked",
		"--owner-key", owner, "--out", revoked); r.code != 0 {
		t.Fatal(r)
	}
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", revoked, "--key", owner, "--out", p("l2.json"))
	tr.accept(t, []string{p("l2.json")}, "layouts/go-build.layout="+revoked)
	expectRejected(t, verify("--log", rot.p("store"), "--log-key", "log"), "revoked-key", `step "build.compile"`, rot.oldID[:8],
		"revoked by layout layouts/go-build.layout (TUF role build v", "key leaked")
}

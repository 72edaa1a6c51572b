package repo

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/trust"
)

const (
	payPattern = "oci/registry.example.com/payments/*"
	payLayout  = "layouts/payments.layout"
	payAPI     = "oci/registry.example.com/payments/api:v1"
)

func newKey(t testing.TB, typ signing.KeyType) signing.Signer {
	t.Helper()
	return signingtest.SignerOf(t, typ)
}

// fixture is a repository with a "payments" team delegated and one release.
type fixture struct {
	dir                        string
	repo                       *Repo
	root, targets, online, dev signing.Signer
	digest                     string
	length                     int64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{dir: t.TempDir(), root: newKey(t, signing.ED25519), targets: newKey(t, signing.ECDSA), online: newKey(t, signing.ED25519), dev: newKey(t, signing.ED25519)}
	r, err := Init(ctx, f.dir, InitOptions{RootSigners: []signing.Signer{f.root}, TargetsSigners: []signing.Signer{f.targets}, Online: f.online})
	if err != nil {
		t.Fatal(err)
	}
	f.repo = r
	p, err := r.Delegate(ctx, Delegation{Name: "payments", Paths: []string{payPattern, payLayout}, Keys: pubs(f.dev)}, f.targets)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	sum := sha256.Sum256([]byte("manifest"))
	f.digest, f.length = hex.EncodeToString(sum[:]), 8
	p, err = f.repo.Release(ctx, "payments", payAPI, Target{SHA256: f.digest, Length: f.length}, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	return f
}

func (f *fixture) accept(t testing.TB, ps ...[]byte) *Change {
	t.Helper()
	r, err := Open(f.dir, OpenOptions{Online: f.online})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := r.Accept(context.Background(), ps...)
	if err != nil {
		t.Fatal(err)
	}
	f.repo = r
	return ch
}

func pubs(ss ...signing.Signer) []crypto.PublicKey {
	out := make([]crypto.PublicKey, len(ss))
	for i, s := range ss {
		out[i] = s.Public()
	}
	return out
}

// tree maps every file under dir to its sha256.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		sum := sha256.Sum256(b)
		m[p] = hex.EncodeToString(sum[:])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t testing.TB, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("files changed: %d before, %d after", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("%s changed", k)
		}
	}
}

func wantRefusal(t testing.TB, err, kind error) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %v", kind)
	}
	if !errors.Is(err, kind) || !errors.Is(err, reject.ErrRefused) {
		t.Fatalf("got %v, want %v (and reject.ErrRefused)", err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not a *repo.Error", err)
	}
}

// serve publishes the fixture and serves it on loopback; it returns the
// metadata URL.
func (f *fixture) serve(t *testing.T) (string, string) {
	t.Helper()
	pub := t.TempDir()
	if _, err := f.repo.Publish(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, pub) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + l.Addr().String() + "/" + MetadataDir, pub
}

func newUpdater(t *testing.T, url string, root []byte, cache string) *updater.Updater {
	t.Helper()
	cfg, err := config.New(url, root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir = cache
	cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func lookup(t *testing.T, u *updater.Updater, path string) *metadata.TargetFiles {
	t.Helper()
	if err := u.Refresh(); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	ti, err := u.GetTargetInfo(path)
	if err != nil {
		t.Fatalf("GetTargetInfo(%s): %v", path, err)
	}
	return ti
}

// TestEndToEndGoTUFUpdater: init → delegate → sign → accept → publish →
// serve, then go-tuf's own updater refreshes from the served directory and
// finds the release.
func TestEndToEndGoTUFUpdater(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// A sub-team under payments, two levels down, releases too.
	web := newKey(t, signing.ECDSA)
	p, err := f.repo.Delegate(ctx, Delegation{Parent: "payments", Name: "payments-web", Paths: []string{payPattern}, Keys: pubs(web)}, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	p, err = f.repo.Release(ctx, "payments-web", "oci/registry.example.com/payments/web:v2", Target{SHA256: f.digest, Length: 99}, web)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	url, pub := f.serve(t)
	root1, err := os.ReadFile(filepath.Join(pub, MetadataDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	u := newUpdater(t, url, root1, t.TempDir())
	ti := lookup(t, u, payAPI)
	if ti.Length != f.length || hex.EncodeToString(ti.Hashes["sha256"]) != f.digest {
		t.Fatalf("target %+v, want length %d sha256 %s", ti, f.length, f.digest)
	}
	tm := u.GetTrustedMetadataSet()
	if tm.Timestamp.Signed.Meta["snapshot.json"].Length == 0 || len(tm.Snapshot.Signed.Meta["payments.json"].Hashes["sha256"]) != 32 {
		t.Fatal("snapshot/timestamp meta without length or sha256")
	}
	if !tm.Root.Signed.ConsistentSnapshot {
		t.Fatal("consistent snapshots off")
	}
	for _, e := range []time.Time{tm.Root.Signed.Expires, tm.Timestamp.Signed.Expires, tm.Snapshot.Signed.Expires} {
		if e.Nanosecond() != 0 || e.Location() != time.UTC {
			t.Fatalf("expiry %v not truncated to seconds UTC", e)
		}
	}
	if d := time.Until(tm.Timestamp.Signed.Expires); d > 25*time.Hour || d < 23*time.Hour {
		t.Fatalf("timestamp expires in %v", d)
	}
	if ti, err := u.GetTargetInfo("oci/registry.example.com/payments/web:v2"); err != nil || ti.Length != 99 {
		t.Fatalf("sub-team's release: %v %v", ti, err)
	}
	// A path nobody released.
	if _, err := u.GetTargetInfo("oci/registry.example.com/payments/web:v1"); err == nil {
		t.Fatal("found an unreleased target")
	}
}

// TestRotateKeyOneAtomicPublish: the delegator rotates the developer key and
// the new key re-signs the role in the same Accept; the client, already
// holding the old state, follows and still finds the release.
func TestRotateKeyOneAtomicPublish(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	url, pub := f.serve(t)
	root1, _ := os.ReadFile(filepath.Join(pub, MetadataDir, "1.root.json"))
	cache := t.TempDir()
	lookup(t, newUpdater(t, url, root1, cache), payAPI)

	oldID, _ := KeyID(f.dev.Public())
	dev2 := newKey(t, signing.RSA)
	parent, err := f.repo.RotateKey(ctx, "payments", oldID, dev2.Public(), f.targets)
	if err != nil {
		t.Fatal(err)
	}
	resigned, err := f.repo.Release(ctx, "payments", "", Target{}, dev2)
	if err != nil {
		t.Fatal(err)
	}
	// The role proposal first: Accept orders the delegator before it.
	ch := f.accept(t, resigned, parent)
	if len(ch.Unverifiable) != 0 || len(ch.Roles) != 2 {
		t.Fatalf("change %+v", ch)
	}
	if _, err := f.repo.Publish(ctx, pub); err != nil {
		t.Fatal(err)
	}
	cached, _ := os.ReadFile(filepath.Join(cache, "root.json"))
	lookup(t, newUpdater(t, url, cached, cache), payAPI)

	// The old key can no longer release.
	p, err := f.repo.Release(ctx, "payments", payLayout, Target{SHA256: f.digest, Length: 3}, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, f.dir)
	_, err = f.repo.Accept(ctx, p)
	wantRefusal(t, err, ErrWrongKey)
	sameTree(t, before, tree(t, f.dir))
}

// TestRevokeKeyKeepsRoleAndRecordsIt: revocation keeps the role's snapshot
// entry, records the key and version, and the role signed only by the
// revoked key becomes unverifiable for clients.
func TestRevokeKeyKeepsRoleAndRecordsIt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dev2 := newKey(t, signing.ED25519)
	// Add a second key by rotating in a delegation with two keys: a new team.
	p, err := f.repo.Delegate(ctx, Delegation{Name: "billing", Paths: []string{"oci/registry.example.com/billing/*"}, Keys: pubs(f.dev, dev2)}, f.targets)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	rel, err := f.repo.Release(ctx, "billing", "oci/registry.example.com/billing/api:v2", Target{SHA256: f.digest, Length: 8}, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, rel)
	devID, _ := KeyID(f.dev.Public())
	rev, err := f.repo.RevokeKey(ctx, "billing", devID, "laptop lost", f.targets)
	if err != nil {
		t.Fatal(err)
	}
	ch := f.accept(t, rev)
	if strings.Join(ch.Unverifiable, ",") != "billing" {
		t.Fatalf("unverifiable %v, want billing", ch.Unverifiable)
	}
	if f.repo.st.snapshot.Signed.Meta["billing.json"] == nil {
		t.Fatal("revocation dropped the role from snapshot")
	}
	recs, _ := f.repo.st.roles[RoleTargets].Signed.UnrecognizedFields[RevocationsField].([]any)
	if len(recs) != 1 {
		t.Fatalf("revocations %v", recs)
	}
	rec := recs[0].(map[string]any)
	if rec["keyid"] != devID || rec["role"] != "billing" || rec["version"].(float64) != float64(f.repo.st.roles[RoleTargets].Signed.Version) {
		t.Fatalf("revocation record %v", rec)
	}
	// go-tuf's updater refuses the role signed only by the revoked key.
	url, pub := f.serve(t)
	root1, _ := os.ReadFile(filepath.Join(pub, MetadataDir, "1.root.json"))
	u := newUpdater(t, url, root1, t.TempDir())
	if err := u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.GetTargetInfo("oci/registry.example.com/billing/api:v2"); !errors.Is(err, &metadata.ErrUnsignedMetadata{}) {
		t.Fatalf("client after revocation: %v, want ErrUnsignedMetadata", err)
	}
	// stepseal's client, fresh (it never trusted the key), says from the
	// signed record which key was revoked, in which version, and why.
	c, err := trust.NewClient(ctx, trust.ClientOptions{Source: url, CacheDir: t.TempDir(), BootstrapRoot: root1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Resolve(ctx, "oci/registry.example.com/billing/api:v2")
	want := fmt.Sprintf("signed by %s, revoked from billing in targets v%d on ", devID, f.repo.st.roles[RoleTargets].Signed.Version)
	if !errors.Is(err, trust.ErrUnsigned) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `("laptop lost")`) {
		t.Fatalf("fresh client after revocation: %v, want ErrUnsigned with %q", err, want)
	}
	// The team re-signs with the remaining key: available again.
	resigned, err := f.repo.Release(ctx, "billing", "", Target{}, dev2)
	if err != nil {
		t.Fatal(err)
	}
	if ch := f.accept(t, resigned); len(ch.Unverifiable) != 0 {
		t.Fatalf("still unverifiable: %v", ch.Unverifiable)
	}
	if _, err := f.repo.Publish(ctx, pub); err != nil {
		t.Fatal(err)
	}
	lookup(t, newUpdater(t, url, root1, t.TempDir()), "oci/registry.example.com/billing/api:v2")
	// Revoking the last key is refused.
	id2, _ := KeyID(dev2.Public())
	_, err = f.repo.RevokeKey(ctx, "billing", id2, "", f.targets)
	wantRefusal(t, err, ErrDelegation)
}

// TestRootRotation: old and new root thresholds both sign; a client on
// root v1 follows to v2.
func TestRootRotation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	url, pub := f.serve(t)
	root1, _ := os.ReadFile(filepath.Join(pub, MetadataDir, "1.root.json"))
	newRoot := newKey(t, signing.ED25519)
	oldID, _ := KeyID(f.root.Public())
	change := RootChange{Add: map[string][]crypto.PublicKey{RoleRoot: {newRoot.Public()}}, Remove: map[string][]string{RoleRoot: {oldID}}}
	onlyNew, err := f.repo.RotateRoot(ctx, change, newRoot)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, f.dir)
	_, err = f.repo.Accept(ctx, onlyNew)
	wantRefusal(t, err, ErrThreshold)
	sameTree(t, before, tree(t, f.dir))
	both, err := SignProposal(ctx, onlyNew, f.root)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, both)
	if _, err := f.repo.Publish(ctx, pub); err != nil {
		t.Fatal(err)
	}
	u := newUpdater(t, url, root1, t.TempDir())
	lookup(t, u, payAPI)
	if v := u.GetTrustedMetadataSet().Root.Signed.Version; v != 2 {
		t.Fatalf("client root v%d, want 2", v)
	}
}

// TestCoSigningThreshold: a 2-of-2 team: one signature is refused, the
// merged proposal is accepted.
func TestCoSigningThreshold(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, b := newKey(t, signing.ED25519), newKey(t, signing.ECDSA)
	p, err := f.repo.Delegate(ctx, Delegation{Name: "platform", Paths: []string{"layouts/platform.layout"}, Keys: pubs(a, b), Threshold: 2}, f.targets)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	one, err := f.repo.Release(ctx, "platform", "layouts/platform.layout", Target{SHA256: f.digest, Length: 10}, a)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, f.dir)
	_, err = f.repo.Accept(ctx, one)
	wantRefusal(t, err, ErrThreshold)
	sameTree(t, before, tree(t, f.dir))
	if _, err := SignProposal(ctx, one, a); !errors.Is(err, ErrProposal) {
		t.Fatalf("second signature by the same key: %v", err)
	}
	// b signs its own copy; the publisher merges both files.
	bOnly, err := SignProposal(ctx, stripSigs(t, one), b)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, one, bOnly)
}

func stripSigs(t testing.TB, b []byte) []byte {
	t.Helper()
	md, err := decode[metadata.TargetsType](b, "")
	if err != nil {
		t.Fatal(err)
	}
	md.ClearSignatures()
	out, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDelegateRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sub := newKey(t, signing.ED25519)
	// payments delegates a sub-team; billing is a sibling team.
	p, err := f.repo.Delegate(ctx, Delegation{Parent: "payments", Name: "payments-web", Paths: []string{"oci/registry.example.com/payments/*"}, Keys: pubs(sub)}, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	p, err = f.repo.Delegate(ctx, Delegation{Name: "billing", Paths: []string{"oci/registry.example.com/billing/*"}, Keys: pubs(sub)}, f.targets)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	cases := []struct {
		name   string
		d      Delegation
		signer signing.Signer
		kind   error
		role   string
	}{
		{"overlapping sibling", Delegation{Name: "ci", Paths: []string{"oci/registry.example.com/*/api:v1"}}, f.targets, ErrOverlap, "ci"},
		{"overlapping sibling layout", Delegation{Name: "ci", Paths: []string{"layouts/*"}}, f.targets, ErrOverlap, "ci"},
		{"diamond", Delegation{Parent: "billing", Name: "payments-web", Paths: []string{"oci/registry.example.com/billing/*"}}, sub, ErrDiamond, "payments-web"},
		{"cycle", Delegation{Parent: "payments-web", Name: "payments", Paths: []string{"oci/registry.example.com/payments/*"}}, sub, ErrCycle, "payments"},
		{"self", Delegation{Parent: "billing", Name: "billing", Paths: []string{"oci/registry.example.com/billing/*"}}, sub, ErrCycle, "billing"},
		{"uppercase name", Delegation{Name: "Payments2", Paths: []string{"x/*"}}, f.targets, ErrRoleName, "Payments2"},
		{"path in name", Delegation{Name: "../x", Paths: []string{"x/*"}}, f.targets, ErrRoleName, "../x"},
		{"reserved name", Delegation{Name: "snapshot", Paths: []string{"x/*"}}, f.targets, ErrRoleName, "snapshot"},
		{"glob inside a segment", Delegation{Name: "ci", Paths: []string{"oci/registry.example.com/ci-*/x"}}, f.targets, ErrPattern, "ci"},
		{"double star", Delegation{Name: "ci", Paths: []string{"oci/**"}}, f.targets, ErrPattern, "ci"},
		{"child outside parent", Delegation{Parent: "payments", Name: "payments-db", Paths: []string{"oci/registry.example.com/billing/*"}}, f.dev, ErrOutsidePaths, "payments-db"},
		{"threshold above keys", Delegation{Name: "ci", Paths: []string{"ci/*"}, Threshold: 2}, f.targets, ErrDelegation, "ci"},
		{"parent not delegated", Delegation{Parent: "nobody", Name: "ci", Paths: []string{"ci/*"}}, f.targets, ErrNotDelegated, "nobody"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tree(t, f.dir)
			if c.d.Keys == nil {
				c.d.Keys = pubs(sub)
			}
			_, err := f.repo.Delegate(ctx, c.d, c.signer)
			wantRefusal(t, err, c.kind)
			var e *Error
			errors.As(err, &e)
			if e.Role != c.role {
				t.Fatalf("error names role %q, want %q: %v", e.Role, c.role, err)
			}
			if c.kind == ErrOverlap && !strings.Contains(e.Conflict, "payments") {
				t.Fatalf("overlap does not name the conflicting role and pattern: %v", err)
			}
			sameTree(t, before, tree(t, f.dir))
		})
	}
}

// TestInitRefusals: bad input writes nothing.
func TestInitRefusals(t *testing.T) {
	ctx := context.Background()
	k := newKey(t, signing.ED25519)
	ecP384 := newP384(t)
	for name, o := range map[string]InitOptions{
		"root threshold above keys":  {RootSigners: []signing.Signer{k}, RootThreshold: 2, TargetsSigners: []signing.Signer{k}, Online: k},
		"no online key":              {RootSigners: []signing.Signer{k}, TargetsSigners: []signing.Signer{k}},
		"P-384 online key":           {RootSigners: []signing.Signer{k}, TargetsSigners: []signing.Signer{k}, Online: ecP384},
		"expiry beyond its bound":    {RootSigners: []signing.Signer{k}, TargetsSigners: []signing.Signer{k}, Online: k, Expiry: Expiry{Targets: 400 * day}},
		"targets threshold negative": {RootSigners: []signing.Signer{k}, TargetsSigners: []signing.Signer{k}, TargetsThreshold: -1, Online: k},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Init(ctx, dir, o); err == nil {
				t.Fatal("accepted")
			}
			if n := len(tree(t, dir)); n != 0 {
				t.Fatalf("%d files written", n)
			}
		})
	}
	f := newFixture(t)
	before := tree(t, f.dir)
	if _, err := Init(ctx, f.dir, InitOptions{RootSigners: []signing.Signer{k}, TargetsSigners: []signing.Signer{k}, Online: k}); err == nil {
		t.Fatal("re-initialized an existing repository")
	}
	sameTree(t, before, tree(t, f.dir))
}

func newP384(t testing.TB) signing.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Keys a role may not have are refused before anything is proposed: an
// ECDSA curve go-tuf would verify with the wrong hash, a short RSA key.
func TestTUFKeyRefusesWeakOrMislabelledKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]crypto.PublicKey{"P-384": &p384.PublicKey, "RSA-1024": &rsa1024.PublicKey} {
		if _, err := TUFKey(pub); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: want ErrUnsupported, got %v", name, err)
		}
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TUFKey(&rsa2048.PublicKey); err != nil {
		t.Errorf("RSA-2048: %v", err)
	}
}

package trust

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestRootVersionSkip(t *testing.T) {
	s, _ := paymentsRepo(t)
	dir := t.TempDir()
	c := s.clientFor(t, dir)
	mustRefresh(t, c)
	// 2.root.json whose content is version 3.
	s.root.Signed.Version = 3
	s.rootSigners = s.signers["root"]
	data := sign(t, s.root, s.rootSigners)
	s.set("2.root.json", data)
	refreshFails(t, c, dir, ErrMixAndMatch)
}

func TestExpiredIntermediateRootAccepted(t *testing.T) {
	s, _ := paymentsRepo(t)
	dir := t.TempDir()
	c := s.clientFor(t, dir)
	mustRefresh(t, c)
	// Root v2 already expired, v3 valid: the walk goes through v2.
	s.rotateRoot()
	s.root.Signed.Expires = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	s.publishRoot()
	s.rotateRoot()
	s.root.Signed.Expires = s.expires
	s.publishRoot()
	s.publishTimestamp()
	ch := mustRefresh(t, c)
	if ch.Root.To != 3 || len(ch.Roots) != 2 {
		t.Errorf("changes %+v", ch)
	}
}

func TestWrongType(t *testing.T) {
	s, _ := paymentsRepo(t)
	dir := t.TempDir()
	c := s.clientFor(t, dir)
	mustRefresh(t, c)
	s.set("timestamp.json", s.get("2.snapshot.json"))
	refreshFails(t, c, dir, ErrMalformed)
}

func TestTargetWithoutSHA256(t *testing.T) {
	s, _ := paymentsRepo(t)
	s.addTarget("payments", "images/payments/md5", []byte("x"))
	tf := s.targets["payments"].Signed.Targets["images/payments/md5"]
	tf.Hashes = metadata.Hashes{"md5": []byte("0123456789abcdef")}
	s.targets["payments"].Signed.Targets["images/payments/md5"] = tf
	s.bump("payments")
	s.publish()
	c := s.clientFor(t, t.TempDir())
	mustRefresh(t, c)
	_, err := c.Resolve(ctx, "images/payments/md5")
	wantErr(t, err, ErrUnsupported)
}

func TestDelegationLimits(t *testing.T) {
	s := newSim(t)
	parent := "targets"
	for i := 0; i < 5; i++ {
		name := "level-" + string(rune('a'+i))
		s.delegate(parent, name, []string{"deep/*"}, true, 1, 1)
		parent = name
	}
	s.addTarget(parent, "deep/x", []byte("x"))
	s.bump("targets")
	s.publish()
	c := s.clientFor(t, t.TempDir(), func(o *ClientOptions) { o.MaxDepth = 3 })
	mustRefresh(t, c)
	_, err := c.Resolve(ctx, "deep/x")
	wantErr(t, err, ErrDelegationLimit)
	c = s.clientFor(t, t.TempDir(), func(o *ClientOptions) { o.MaxRoles = 2 })
	mustRefresh(t, c)
	_, err = c.Resolve(ctx, "deep/x")
	wantErr(t, err, ErrDelegationLimit)
	c = s.clientFor(t, t.TempDir())
	mustRefresh(t, c)
	r, err := c.Resolve(ctx, "deep/x")
	if err != nil || len(r.Chain) != 6 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestRotatedOutKeySignsNewVersion(t *testing.T) {
	s, _ := paymentsRepo(t)
	c := s.clientFor(t, t.TempDir())
	mustRefresh(t, c)
	// targets v3 replaces payments' key; the old key then signs payments v2.
	old := s.signers["payments"]
	d := s.targets["targets"].Signed.Delegations
	delete(d.Keys, old[0].id)
	k := newKey(t)
	d.Keys[k.id] = k.key
	d.Roles[0].KeyIDs = []string{k.id}
	s.bump("targets")
	s.bump("payments")
	s.publish() // payments still signed by the old key
	mustRefresh(t, c)
	_, err := c.Resolve(ctx, "images/payments/api")
	wantErr(t, err, ErrUnsigned)
	if !strings.Contains(err.Error(), k.id) {
		t.Errorf("does not name the key now expected: %v", err)
	}
	if !strings.Contains(err.Error(), "signed by "+old[0].id+", removed from targets's delegation of payments in targets v3 (trusted before at v2)") {
		t.Errorf("does not name the revoked key: %v", err)
	}
}

// A role verified in an earlier refresh of the process is reused only
// while its delegation and bytes are the same and it has not expired.
func TestVerifiedRoleReuse(t *testing.T) {
	s, _ := paymentsRepo(t)
	now := time.Now()
	c := s.clientFor(t, t.TempDir(), func(o *ClientOptions) { o.Now = func() time.Time { return now } })
	mustRefresh(t, c)
	// targets re-delegates payments to a new key; payments' bytes stay.
	d := s.targets["targets"].Signed.Delegations
	k := newKey(t)
	delete(d.Keys, s.signers["payments"][0].id)
	d.Keys[k.id] = k.key
	d.Roles[0].KeyIDs = []string{k.id}
	s.bump("targets")
	s.publish()
	mustRefresh(t, c)
	_, err := c.Resolve(ctx, "images/payments/api")
	wantErr(t, err, ErrUnsigned)

	// Expiry passes between two refreshes of one process.
	s2, _ := paymentsRepo(t)
	s2.bump("payments")
	s2.targets["payments"].Signed.Expires = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	s2.publish()
	c2 := s2.clientFor(t, t.TempDir(), func(o *ClientOptions) { o.Now = func() time.Time { return now } })
	mustRefresh(t, c2)
	if _, err := c2.Resolve(ctx, "images/payments/api"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	s2.publishTimestamp()
	mustRefresh(t, c2)
	_, err = c2.Resolve(ctx, "images/payments/api")
	wantErr(t, err, ErrFreeze)
}

func TestLoadCache(t *testing.T) {
	s, _ := paymentsRepo(t)
	s.delegate("targets", "billing", []string{"images/billing/*"}, true, 1, 1)
	s.addTarget("billing", "images/billing/x", []byte("x"))
	s.bump("targets")
	s.publish()
	dir := t.TempDir()
	c := s.clientFor(t, dir)
	if err := c.LoadCache(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("LoadCache of an empty cache: %v", err)
	}
	// A cache holding a root only (a first refresh that failed later).
	if err := writeFileAtomic(dir+"/root.json", s.get("1.root.json"), false); err != nil {
		t.Fatal(err)
	}
	wantErr(t, c.LoadCache(ctx), ErrUnavailable)
	mustRefresh(t, c)
	// Lookups load (and cache) the roles on their way.
	for _, p := range []string{"images/payments/api", "images/billing/x"} {
		if _, err := c.Resolve(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(dir + "/billing.json"); err != nil {
		t.Fatal(err)
	}
	before := cacheState(t, dir)
	s.srv.Close() // no network from here on
	c = s.clientFor(t, dir)
	if err := c.LoadCache(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Resolve(ctx, "images/payments/api"); err != nil || r.Role != "payments" {
		t.Fatalf("%+v %v", r, err)
	}
	_, err := c.Resolve(ctx, "images/billing/x")
	wantErr(t, err, ErrUnavailable)
	if after := cacheState(t, dir); !maps.Equal(before, after) {
		t.Errorf("cache changed")
	}
	// An expired cache does not load.
	late := s.clientFor(t, dir, func(o *ClientOptions) { o.Now = func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) } })
	wantErr(t, late.LoadCache(ctx), ErrFreeze)
}

func TestChangesNameDelegationChanges(t *testing.T) {
	s, _ := paymentsRepo(t)
	dir := t.TempDir()
	mustRefresh(t, s.clientFor(t, dir))
	d := s.targets["targets"].Signed.Delegations
	old := s.signers["payments"][0]
	k := newKey(t)
	delete(d.Keys, old.id)
	d.Keys[k.id] = k.key
	d.Roles[0].KeyIDs = []string{k.id}
	d.Roles[0].Paths = []string{"images/payments/*", "layouts/payments.layout"}
	s.signers["payments"] = []*testKey{k}
	s.delegate("targets", "billing", []string{"images/billing/*"}, true, 1, 1)
	s.bump("targets")
	s.bump("payments")
	s.publish()
	// A new process: the changes are against the cache.
	ch := mustRefresh(t, s.clientFor(t, dir))
	var got []string
	for _, c := range ch.Delegations {
		got = append(got, c.Role+" "+c.Change+" "+c.KeyID)
	}
	want := []string{"billing added ", "payments key-added " + k.id, "payments key-removed " + old.id, "payments paths "}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("delegation changes\n%v\nwant\n%v", got, want)
	}
}

func TestMirrors(t *testing.T) {
	s, _ := paymentsRepo(t)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/timestamp.json") {
			w.Write([]byte(`{"signed": {}, "signatures": []}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer garbage.Close()
	down := "http://127.0.0.1:1/metadata"
	dir := t.TempDir()
	// A malicious mirror first, then the good one: accepted from the good one.
	c := s.clientFor(t, dir, func(o *ClientOptions) { o.Source, o.Mirrors = garbage.URL+"/metadata", []string{down, s.url()} })
	mustRefresh(t, c)
	if _, err := c.Resolve(ctx, "images/payments/api"); err != nil {
		t.Fatal(err)
	}
	// All fail: the refusal is reported, not the unreachable mirror.
	s.publishTimestamp()
	c = s.clientFor(t, dir, func(o *ClientOptions) { o.Source, o.Mirrors = down, []string{garbage.URL + "/metadata"} })
	refreshFails(t, c, dir, ErrMalformed)
}

// TestForbiddenForMissingRoot: an object store answers 403 for a root
// version that does not exist; the refresh treats it as the end of the
// root chain (go-tuf alone fails every refresh), and a rotation behind
// such a store still reaches the client. A 403 for any other file is
// still an error.
func TestForbiddenForMissingRoot(t *testing.T) {
	s, _ := paymentsRepo(t)
	dir := t.TempDir()
	c := s.clientFor(t, dir)
	s.setIntercept(func(name string, w http.ResponseWriter, r *http.Request) bool {
		if s.get(name) == nil {
			http.Error(w, "AccessDenied", http.StatusForbidden)
			return true
		}
		return false
	})
	mustRefresh(t, c)
	s.rotateRoot()
	s.publishRoot()
	s.publish()
	ch := mustRefresh(t, c)
	if ch.Root.To != ch.Root.From+1 {
		t.Errorf("root after a rotation behind a 403 store: %+v", ch.Root)
	}
	s.setIntercept(func(name string, w http.ResponseWriter, r *http.Request) bool {
		if name == "timestamp.json" {
			http.Error(w, "AccessDenied", http.StatusForbidden)
			return true
		}
		return false
	})
	refreshFails(t, c, dir, ErrUnavailable)
}

// TestFloor: a consumer without a disk, given the floor a long-running
// client recorded, starts from the newer root and refuses a mirror
// replaying an older but validly signed state, which the shipped root
// alone would accept.
func TestFloor(t *testing.T) {
	s, _ := paymentsRepo(t)
	s.mu.Lock()
	old := map[string][]byte{}
	for k, v := range s.files {
		old[k] = v
	}
	s.mu.Unlock()
	shipped := s.get("1.root.json")
	s.rotateRoot()
	s.publishRoot()
	s.bump("payments")
	s.publish()
	keeper := s.clientFor(t, t.TempDir())
	mustRefresh(t, keeper)
	floor := keeper.FloorOf()
	if floor.Versions["root"] != 2 || floor.Versions["payments"] != 2 || rootVersion(floor.Root) != 2 {
		t.Fatalf("floor %+v", floor.Versions)
	}
	b, _ := json.Marshal(floor)
	floor, err := ParseFloor(b)
	if err != nil {
		t.Fatal(err)
	}
	// A mirror replays the state before the release and the rotation.
	s.mu.Lock()
	s.files = old
	s.mu.Unlock()
	plain, err := NewClient(ctx, ClientOptions{Source: s.url(), CacheDir: t.TempDir(), BootstrapRoot: shipped})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Refresh(ctx); err != nil {
		t.Fatalf("without a floor the replayed state verifies (this is the attack): %v", err)
	}
	dir := t.TempDir()
	c, err := NewClient(ctx, ClientOptions{Source: s.url(), CacheDir: dir, BootstrapRoot: shipped, Floor: floor})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Refresh(ctx)
	wantErr(t, err, ErrRollback)
	if !strings.Contains(err.Error(), "trust floor") {
		t.Fatalf("%v does not name the floor", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "timestamp.json")); err == nil {
		t.Fatal("a refused refresh wrote the cache")
	}
	if _, err := ParseFloor([]byte(`{"versions":{"root":-1}}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("negative floor: %v", err)
	}
	if _, err := ParseFloor([]byte(`{"versions":{},"extra":1}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown field: %v", err)
	}
}

package trust

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// testKey is an ed25519 key with its TUF form and signer.
type testKey struct {
	key    *metadata.Key
	id     string
	signer signature.Signer
}

func newKey(t testing.TB) *testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	id, err := k.ID()
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadED25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{key: k, id: id, signer: s}
}

// sim is an in-memory TUF repository served over a loopback HTTP server,
// in the manner of go-tuf's and python-tuf's RepositorySimulator: it
// signs real metadata with go-tuf's metadata package, publishes consistent
// snapshots with length and sha256 in snapshot and timestamp meta, and can
// serve anything (files maps a URL name to bytes; intercept overrides).
type sim struct {
	t         testing.TB
	expires   time.Time
	root      *metadata.Metadata[metadata.RootType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   map[string]*metadata.Metadata[metadata.TargetsType]
	order     []string // targets roles in creation order
	signers   map[string][]*testKey
	// rootSigners sign the next root (old and new keys on rotation).
	rootSigners []*testKey

	mu        sync.Mutex
	files     map[string][]byte
	intercept func(name string, w http.ResponseWriter, r *http.Request) bool
	requests  []string
	srv       *httptest.Server
}

func newSim(t testing.TB) *sim {
	t.Helper()
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	s := &sim{t: t, expires: exp, targets: map[string]*metadata.Metadata[metadata.TargetsType]{},
		signers: map[string][]*testKey{}, files: map[string][]byte{}}
	s.root = metadata.Root(exp)
	for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
		k := newKey(t)
		if err := s.root.Signed.AddKey(k.key, role); err != nil {
			t.Fatal(err)
		}
		s.signers[role] = []*testKey{k}
	}
	s.rootSigners = s.signers["root"]
	s.timestamp = metadata.Timestamp(exp)
	s.snapshot = metadata.Snapshot(exp)
	s.targets["targets"] = metadata.Targets(exp)
	s.order = []string{"targets"}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	s.publishRoot()
	s.publish()
	return s
}

func (s *sim) url() string { return s.srv.URL + "/metadata" }

func (s *sim) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/metadata/")
	s.mu.Lock()
	s.requests = append(s.requests, name)
	icp := s.intercept
	data, ok := s.files[name]
	s.mu.Unlock()
	if icp != nil && icp(name, w, r) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(data)
}

func (s *sim) set(name string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = data
}

func (s *sim) get(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[name]
}

func (s *sim) setIntercept(f func(name string, w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.intercept = f
}

func sign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], keys []*testKey) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		if _, err := md.Sign(k.signer); err != nil {
			t.Fatal(err)
		}
	}
	data, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func metaOf(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

// publishRoot signs the current root with rootSigners and serves it as
// <version>.root.json.
func (s *sim) publishRoot() {
	data := sign(s.t, s.root, s.rootSigners)
	s.set(fmt.Sprintf("%d.root.json", s.root.Signed.Version), data)
	s.rootSigners = s.signers["root"]
}

// rotateRoot starts root version+1 (signed, when published, by the old
// root keys too).
func (s *sim) rotateRoot() {
	s.root.Signed.Version++
	s.rootSigners = append([]*testKey(nil), s.signers["root"]...)
}

// publish signs every targets role at its current version, then a new
// snapshot and timestamp naming them (with length and sha256).
func (s *sim) publish() {
	for _, role := range s.order {
		md := s.targets[role]
		data := sign(s.t, md, s.signers[role])
		s.set(fmt.Sprintf("%d.%s.json", md.Signed.Version, role), data)
		s.snapshot.Signed.Meta[role+".json"] = metaOf(md.Signed.Version, data)
	}
	s.publishSnapshot()
}

func (s *sim) publishSnapshot() {
	if s.get(fmt.Sprintf("%d.snapshot.json", s.snapshot.Signed.Version)) != nil {
		s.snapshot.Signed.Version++
	}
	data := sign(s.t, s.snapshot, s.signers["snapshot"])
	s.set(fmt.Sprintf("%d.snapshot.json", s.snapshot.Signed.Version), data)
	s.timestamp.Signed.Meta["snapshot.json"] = metaOf(s.snapshot.Signed.Version, data)
	s.publishTimestamp()
}

func (s *sim) publishTimestamp() {
	if s.get("timestamp.json") != nil {
		s.timestamp.Signed.Version++
	}
	s.set("timestamp.json", sign(s.t, s.timestamp, s.signers["timestamp"]))
}

// bump raises role's version for the next publish.
func (s *sim) bump(role string) { s.targets[role].Signed.Version++ }

// delegate adds role under parent for paths with n fresh keys and
// threshold.
func (s *sim) delegate(parent, role string, paths []string, terminating bool, n, threshold int) {
	s.t.Helper()
	p := s.targets[parent]
	if p.Signed.Delegations == nil {
		p.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	var ids []string
	keys := s.signers[role]
	if keys == nil {
		for i := 0; i < n; i++ {
			keys = append(keys, newKey(s.t))
		}
		s.signers[role] = keys
	}
	for _, k := range keys {
		p.Signed.Delegations.Keys[k.id] = k.key
		ids = append(ids, k.id)
	}
	p.Signed.Delegations.Roles = append(p.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, KeyIDs: ids, Threshold: threshold, Terminating: terminating, Paths: paths})
	if s.targets[role] == nil {
		s.targets[role] = metadata.Targets(s.expires)
		s.order = append(s.order, role)
	}
}

// addTarget lists path with content data in role; returns its sha256.
func (s *sim) addTarget(role, path string, data []byte) string {
	s.t.Helper()
	tf, err := metadata.TargetFile().FromBytes(path, data, "sha256")
	if err != nil {
		s.t.Fatal(err)
	}
	s.targets[role].Signed.Targets[path] = tf
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// clientFor returns a Client of s with its own cache directory.
func (s *sim) clientFor(t testing.TB, dir string, mod ...func(*ClientOptions)) *Client {
	t.Helper()
	o := ClientOptions{Source: s.url(), CacheDir: dir, BootstrapRoot: s.get("1.root.json"), FileTimeout: 2 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	c, err := NewClient(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cacheState is every file of a cache directory and its sha256.
func cacheState(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		m[e.Name()] = hex.EncodeToString(sum[:8])
	}
	return m
}

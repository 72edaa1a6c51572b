package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/trust"
)

// releaseLayout signs the payments layout into the fixture and hosts its
// file; it returns the bytes.
func releaseLayout(t *testing.T, f *fixture, body string) []byte {
	t.Helper()
	data := []byte(body)
	sum := sha256.Sum256(data)
	p, err := f.repo.Release(context.Background(), "payments", payLayout, Target{SHA256: hex.EncodeToString(sum[:]), Length: int64(len(data))}, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	if err := f.repo.AddTargetFile(payLayout, data); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestTargetFilesHostedAndFetched: a developer releases a layout file,
// the publisher hosts it, publish writes it under targets/ by content
// address; go-tuf's own updater and stepseal's client download it, the
// client then serves it from its cache without a request.
func TestTargetFilesHostedAndFetched(t *testing.T) {
	f := newFixture(t)
	data := releaseLayout(t, f, `{"_type":"layout","v":1}`)
	url, pub := f.serve(t)
	sum := sha256.Sum256(data)
	if b, err := os.ReadFile(filepath.Join(pub, TargetsDir, "layouts", hex.EncodeToString(sum[:])+".payments.layout")); err != nil || string(b) != string(data) {
		t.Fatalf("published target file: %q %v", b, err)
	}
	// go-tuf's updater (interoperability: the consistent target name).
	u := newUpdater(t, url, f.repo.RootBytes(), t.TempDir())
	ti := lookup(t, u, payLayout)
	u.GetTrustedMetadataSet() // refreshed
	dst := filepath.Join(t.TempDir(), "layout")
	if _, got, err := u.DownloadTarget(ti, dst, strings.TrimSuffix(url, "metadata")+"targets/"); err != nil || string(got) != string(data) {
		t.Fatalf("go-tuf DownloadTarget: %q %v", got, err)
	}
	// stepseal's client.
	cache := t.TempDir()
	c, err := trust.NewClient(context.Background(), trust.ClientOptions{Source: url, CacheDir: cache, BootstrapRoot: f.repo.RootBytes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(context.Background(), payLayout)
	if err != nil || string(got.Data) != string(data) || got.Cached || got.Role != "payments" {
		t.Fatalf("Fetch: %+v %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(cache, "targets", got.SHA256)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cached copy: %v %v", fi, err)
	}
	got, err = c.Fetch(context.Background(), payLayout)
	if err != nil || !got.Cached {
		t.Fatalf("second Fetch: %+v %v", got, err)
	}
	// An OCI artifact is listed, not hosted: there is no file to fetch.
	if _, err := c.Fetch(context.Background(), payAPI); !errors.Is(err, trust.ErrUnavailable) {
		t.Fatalf("Fetch of an unhosted target: %v", err)
	}
	// Publishing again writes nothing new.
	if n, err := f.repo.Publish(context.Background(), pub); err != nil || len(n) != 0 {
		t.Fatalf("republish: %v %v", n, err)
	}
}

// TestAddTargetFileRefusesUnlisted: a file no role lists with its digest
// and length is not hosted, and nothing is written.
func TestAddTargetFileRefusesUnlisted(t *testing.T) {
	f := newFixture(t)
	releaseLayout(t, f, "layout v1")
	before := tree(t, f.dir)
	for name, tc := range map[string]struct{ path, body string }{
		"other bytes":   {payLayout, "layout v2"},
		"unlisted path": {"layouts/other.layout", "layout v1"},
		"traversal":     {"../escape", "layout v1"},
	} {
		err := f.repo.AddTargetFile(tc.path, []byte(tc.body))
		if err == nil || !errors.Is(err, reject.ErrRefused) {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if err := f.repo.AddTargetFile(payLayout, []byte("layout v2")); !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), "listed by payments") {
		t.Fatalf("mismatch message: %v", err)
	}
	sameTree(t, before, tree(t, f.dir))
}

// TestFetchAttacks: a mirror serving other bytes, more bytes, or nothing
// in time; a role vouching for a file beyond the client's cap. Each is the
// exact typed error and nothing is cached.
func TestFetchAttacks(t *testing.T) {
	f := newFixture(t)
	data := releaseLayout(t, f, strings.Repeat("L", 100))
	_, pub := f.serve(t)
	var mode atomic.Value
	mode.Store("")
	fs := Handler(pub)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/targets/") {
			switch mode.Load().(string) {
			case "other":
				w.Write([]byte(strings.Repeat("X", 100)))
				return
			case "longer":
				w.Write([]byte(strings.Repeat("L", 100000)))
				return
			case "shorter":
				w.Write([]byte(strings.Repeat("L", 10)))
				return
			case "slow":
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			case "404":
				http.NotFound(w, r)
				return
			}
		}
		fs.ServeHTTP(w, r)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		mode string
		cat  error
		max  int64
	}{
		{"other", trust.ErrDigestMismatch, 0},
		{"longer", trust.ErrTooLarge, 0},
		{"shorter", trust.ErrDigestMismatch, 0},
		{"slow", trust.ErrTimeout, 0},
		{"404", trust.ErrUnavailable, 0},
		{"", trust.ErrTooLarge, 50},
	} {
		mode.Store(tc.mode)
		cache := t.TempDir()
		c, err := trust.NewClient(context.Background(), trust.ClientOptions{Source: srv.URL + "/metadata", CacheDir: cache,
			BootstrapRoot: f.repo.RootBytes(), FileTimeout: 300 * time.Millisecond, MaxTargetSize: tc.max})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, err = c.Fetch(context.Background(), payLayout)
		if !errors.Is(err, tc.cat) || !strings.Contains(err.Error(), "payments") {
			t.Fatalf("%q: got %v, want %v naming the role", tc.mode, err, tc.cat)
		}
		t.Logf("%q: %v", tc.mode, err)
		if _, err := os.Stat(filepath.Join(cache, "targets")); err == nil {
			entries, _ := os.ReadDir(filepath.Join(cache, "targets"))
			if len(entries) != 0 {
				t.Fatalf("%q: something was cached: %v", tc.mode, entries)
			}
		}
	}
	// The good file after the attacks; a tampered cached copy is not used.
	mode.Store("")
	cache := t.TempDir()
	c, _ := trust.NewClient(context.Background(), trust.ClientOptions{Source: srv.URL + "/metadata", CacheDir: cache, BootstrapRoot: f.repo.RootBytes()})
	if _, err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(context.Background(), payLayout)
	if err != nil || string(got.Data) != string(data) {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "targets", got.SHA256), []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err = c.Fetch(context.Background(), payLayout); err != nil || got.Cached || string(got.Data) != string(data) {
		t.Fatalf("tampered cache: %+v %v", got, err)
	}
}

package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInteropRealRepositories bootstraps from, and refreshes, two
// repositories written by other TUF implementations (Sigstore's
// root-signing and tuf-on-ci 0.11, from the TUF conformance suite's static
// data), at the time each was captured, and finds their targets.
func TestInteropRealRepositories(t *testing.T) {
	for _, tc := range []struct {
		dir     string
		role    string
		refused string // a role stepseal's name rule refuses
	}{
		{"sigstore-root-signing", "targets", "registry.npmjs.org"},
		{"tuf-on-ci-0.11", "delegatedrole", ""},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			base := filepath.Join("testdata", "tuf-conformance", tc.dir)
			read := func(name string) string {
				data, err := os.ReadFile(filepath.Join(base, name))
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(string(data))
			}
			at, err := time.Parse("2006-01-02 15:04:05-07:00", read("faketime"))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.FileServer(http.Dir(base)))
			defer srv.Close()
			dir := t.TempDir()
			c, err := NewClient(ctx, ClientOptions{
				Source: srv.URL + "/metadata", CacheDir: dir, BootstrapRoot: []byte(read("initial_root.json")),
				Now: func() time.Time { return at }, FileTimeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			ch, err := c.Refresh(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("changes %+v", ch)
			if err := c.LoadAll(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok := c.Status(ctx).Refused[tc.refused]; tc.refused != "" && !ok {
				t.Errorf("%s not refused: %v", tc.refused, c.Status(ctx).Refused)
			}
			path := read("targetpath")
			r, err := c.Resolve(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if r.Role != tc.role || len(r.SignedBy) < r.Threshold {
				t.Errorf("resolution %+v", r)
			}
			// The artifact the repository serves is the one resolved.
			data, err := os.ReadFile(filepath.Join(base, "targets", filepath.Dir(path), r.SHA256+"."+filepath.Base(path)))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if _, err := c.VerifyArtifact(ctx, path, hex.EncodeToString(sum[:]), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			// Warm refresh from the cache, at the same time.
			if ch, err := c.Refresh(ctx); err != nil || ch.Updated {
				t.Fatalf("warm refresh: %+v %v", ch, err)
			}
			// Today, the Sigstore capture is expired: refused as a freeze.
			if tc.dir == "sigstore-root-signing" {
				late, err := NewClient(ctx, ClientOptions{Source: srv.URL + "/metadata", CacheDir: t.TempDir(), BootstrapRoot: []byte(read("initial_root.json"))})
				if err != nil {
					t.Fatal(err)
				}
				_, err = late.Refresh(ctx)
				wantErr(t, err, ErrFreeze)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const static = "../../pkg/trust/testdata/tuf-conformance"

// server serves dir and counts the requests for each path.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
	// tamper, if set, replaces the body of the paths it returns true for.
	tamper func(p string) []byte
}

func serve(t *testing.T, dir string) *server {
	s := &server{hits: map[string]int{}}
	fs := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		tamper := s.tamper
		s.mu.Unlock()
		if tamper != nil {
			if b := tamper(r.URL.Path); b != nil {
				w.Write(b)
				return
			}
		}
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) setTamper(f func(p string) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tamper = f
}

func (s *server) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.hits {
		if strings.HasPrefix(p, prefix) {
			n += c
		}
	}
	return n
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestStaticRepositories runs the protocol's three commands against the
// suite's two real-world repositories at the time each was captured:
// init, refresh, download (twice: the second is served from the target
// directory), then a download of a target that is not listed, and a
// tampered artifact, which fail with exit code 1.
func TestStaticRepositories(t *testing.T) {
	for _, repo := range []string{"sigstore-root-signing", "tuf-on-ci-0.11"} {
		t.Run(repo, func(t *testing.T) {
			base := filepath.Join(static, repo)
			at, err := time.Parse("2006-01-02 15:04:05-07:00", read(t, filepath.Join(base, "faketime")))
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv("STEPSEAL_CONFORMANCE_NOW", at.Format(time.RFC3339))
			s := serve(t, base)
			md, td := t.TempDir(), t.TempDir()
			var log bytes.Buffer
			cmd := func(args ...string) int {
				log.Reset()
				return run(context.Background(), args, &log, time.Now)
			}
			if c := cmd("--metadata-dir", md, "init", filepath.Join(base, "initial_root.json")); c != 0 {
				t.Fatalf("init: exit %d: %s", c, log.String())
			}
			if s.count("/") != 0 {
				t.Fatal("init went to the network")
			}
			if c := cmd("--metadata-dir", md, "--metadata-url", s.URL+"/metadata", "refresh"); c != 0 {
				t.Fatalf("refresh: exit %d: %s", c, log.String())
			}
			for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
				if _, err := os.Stat(filepath.Join(md, f)); err != nil {
					t.Fatalf("refresh did not store %s: %v", f, err)
				}
			}
			target := read(t, filepath.Join(base, "targetpath"))
			dl := func(names ...string) int {
				args := []string{"--metadata-dir", md, "--metadata-url", s.URL + "/metadata"}
				for _, n := range names {
					args = append(args, "--target-name", n)
				}
				return cmd(append(args, "--target-base-url", s.URL+"/targets/", "--target-dir", td, "download")...)
			}
			if c := dl(target); c != 0 {
				t.Fatalf("download: exit %d: %s", c, log.String())
			}
			local := filepath.Join(td, url.PathEscape(target))
			if _, err := os.Stat(local); err != nil {
				t.Fatal(err)
			}
			n := s.count("/targets/")
			if c := dl(target); c != 0 || s.count("/targets/") != n {
				t.Fatalf("second download: exit %d, %d artifact requests (want none): %s", c, s.count("/targets/")-n, log.String())
			}
			if c := dl(target, "no/such/target"); c != 1 {
				t.Fatalf("unlisted target: exit %d, want 1: %s", c, log.String())
			}
			// A changed artifact in the directory is downloaded again; a
			// tampered one on the server is refused and not stored.
			if err := os.WriteFile(local, []byte("stale"), 0o600); err != nil {
				t.Fatal(err)
			}
			s.setTamper(func(p string) []byte {
				if strings.HasPrefix(p, "/targets/") {
					return []byte("tampered")
				}
				return nil
			})
			if c := dl(target); c != 1 || read(t, local) != "stale" {
				t.Fatalf("tampered artifact: exit %d, want 1: %s", c, log.String())
			}
			s.setTamper(nil)
			if c := dl(target); c != 0 || read(t, local) == "stale" {
				t.Fatalf("download after a change: exit %d: %s", c, log.String())
			}
		})
	}
}

// TestRefusals: a refresh that does not verify exits 1 and leaves the
// metadata directory as it was; usage errors exit 1.
func TestRefusals(t *testing.T) {
	base := filepath.Join(static, "tuf-on-ci-0.11")
	s := serve(t, base)
	md := t.TempDir()
	var log bytes.Buffer
	cmd := func(args ...string) int {
		log.Reset()
		return run(context.Background(), args, &log, time.Now)
	}
	if c := cmd("--metadata-dir", md, "init", filepath.Join(base, "initial_root.json")); c != 0 {
		t.Fatalf("init: %d %s", c, log.String())
	}
	t.Setenv("STEPSEAL_CONFORMANCE_NOW", "2025-02-09T09:17:23Z")
	s.setTamper(func(p string) []byte {
		if p == "/metadata/timestamp.json" {
			return []byte(`{"signed":{},"signed":{},"signatures":[]}`)
		}
		return nil
	})
	if c := cmd("--metadata-dir", md, "--metadata-url", s.URL+"/metadata", "refresh"); c != 1 {
		t.Fatalf("malformed timestamp: exit %d, want 1", c)
	}
	if entries, _ := os.ReadDir(md); len(entries) != 1 {
		t.Fatalf("metadata directory changed on refusal: %v", entries)
	}
	// Expired: the same repository long after its expiry.
	s.setTamper(nil)
	t.Setenv("STEPSEAL_CONFORMANCE_NOW", "2200-01-01T00:00:00Z")
	if c := cmd("--metadata-dir", md, "--metadata-url", s.URL+"/metadata", "refresh"); c != 1 || !strings.Contains(log.String(), "expired") {
		t.Fatalf("expired repository: exit %d, want 1: %s", c, log.String())
	}
	for _, args := range [][]string{
		{},
		{"--metadata-dir", md, "refresh"},
		{"--metadata-dir", md, "bogus"},
		{"--metadata-dir", md, "--metadata-url", s.URL, "download"},
		{"--no-such-flag"},
		{"--metadata-dir", filepath.Join(md, "x"), "init", filepath.Join(md, "missing.json")},
	} {
		if c := cmd(args...); c != 1 {
			t.Fatalf("%q: exit %d, want 1", args, c)
		}
	}
}

func TestFaketime(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return base }
	for v, want := range map[string]time.Time{
		"":                     base,
		"+2d":                  base.Add(48 * time.Hour),
		"-90m":                 base.Add(-90 * time.Minute),
		"+1y":                  base.Add(365 * 24 * time.Hour),
		"+30":                  base.Add(30 * time.Second),
		"2025-02-09 12:02:08":  time.Date(2025, 2, 9, 12, 2, 8, 0, time.Local),
		"@2025-02-09 12:02:08": time.Date(2025, 2, 9, 12, 2, 8, 0, time.Local),
	} {
		t.Setenv("FAKETIME", v)
		clock, err := clockFrom(now)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got := clock(); !got.Equal(want) {
			t.Errorf("FAKETIME %q: %v, want %v", v, got, want)
		}
	}
	for _, v := range []string{"+xd", "tomorrow", "+1e9d"} {
		t.Setenv("FAKETIME", v)
		if _, err := clockFrom(now); err == nil {
			t.Errorf("FAKETIME %q accepted", v)
		}
	}
	t.Setenv("STEPSEAL_CONFORMANCE_NOW", "bad")
	if _, err := clockFrom(now); err == nil {
		t.Error("bad STEPSEAL_CONFORMANCE_NOW accepted")
	}
}

package logserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
)

func TestRedactDSN(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"u:s3cr:et@tcp(db:3306)/log", "u:***@tcp(db:3306)/log"},
		{"u:p@ss@tcp(db)/log?tls=true", "u:***@tcp(db)/log?tls=true"},
		{"u@tcp(db)/log", "u@tcp(db)/log"},
		{"/log", "/log"},
		{"u:pw@/log", "u:***@/log"},
	} {
		if got := RedactDSN(c.dsn); got != c.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", c.dsn, got, c.want)
		}
	}
	cfg := AWSConfig{DSN: "stepseal:hunter2@tcp(127.0.0.1:3306)/log", Bucket: "b", Endpoint: "http://127.0.0.1:8333"}
	if s := cfg.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "S3 bucket b") {
		t.Errorf("String() = %q", s)
	}
	err := cfg.ScrubError(fmt.Errorf("dial %s: %w", cfg.DSN, os.ErrDeadlineExceeded))
	if strings.Contains(err.Error(), "hunter2") || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ScrubError: %v", err)
	}
	if err := (AWSConfig{Bucket: "b"}).Validate(); err == nil {
		t.Error("no DSN validated")
	}
	if err := (AWSConfig{DSN: "u@/x"}).Validate(); err == nil {
		t.Error("no bucket validated")
	}
}

// TestStoredFiles: a Storage log's files are served at exactly their
// tlog-tiles paths; nothing else reaches the storage.
func TestStoredFiles(t *testing.T) {
	files := map[string]string{"checkpoint": "cp", layout.TilePath(0, 1, 5): "t", layout.EntriesPath(1234067, 0): "e"}
	var asked []string
	h := storedFiles(func(_ context.Context, p string) ([]byte, error) {
		asked = append(asked, p)
		if d, ok := files[p]; ok {
			return []byte(d), nil
		}
		if p == "tile/1/000" {
			return nil, errors.New("storage down")
		}
		return nil, os.ErrNotExist
	})
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/checkpoint", 200, "cp"},
		{"/tile/0/001.p/5", 200, "t"},
		{"/tile/entries/x001/x234/067", 200, "e"},
		{"/tile/0/002", 404, ""},
		{"/tile/1/000", 503, ""},
		{"/tile/0/1", 404, ""},
		{"/tile/0/001.p/0", 404, ""},
		{"/tile/64/000", 404, ""},
		{"/tile/entries/../../etc/passwd", 404, ""},
		{"/tile/0/x000/001", 404, ""},
		{"/.state/treeState", 404, ""},
		{"/tile/", 404, ""},
	} {
		asked = nil
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest(http.MethodGet, c.path, nil))
		if w.Code != c.status || (c.status == 200 && w.Body.String() != c.body) {
			t.Errorf("GET %s: %d %q, want %d %q", c.path, w.Code, w.Body.String(), c.status, c.body)
		}
		if c.status == 404 && len(asked) > 0 && !strings.HasPrefix(c.path, "/"+asked[0]) {
			t.Errorf("GET %s asked the storage for %v", c.path, asked)
		}
	}
}

// FuzzStoredPath: any URL path either maps to itself, a canonical
// tlog-tiles path, or is refused.
func FuzzStoredPath(f *testing.F) {
	for _, s := range []string{"/checkpoint", "/tile/0/001", "/tile/0/x001/x234/067.p/8", "/tile/entries/000.p/255", "/tile/entries/x/", "/tile/9/../1", "/tile/0/001.p/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := storedPath(s)
		if !ok {
			return
		}
		if strings.TrimPrefix(s, "/") != p || strings.Contains(p, "..") || strings.Contains(p, "//") {
			t.Fatalf("storedPath(%q) = %q", s, p)
		}
		if p != layout.CheckpointPath && !strings.HasPrefix(p, "tile/") {
			t.Fatalf("storedPath(%q) = %q", s, p)
		}
	})
}

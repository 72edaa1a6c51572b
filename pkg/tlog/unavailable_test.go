package tlog

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"

	"github.com/stepseal/stepseal/pkg/reject"
)

// flakyServer serves a log directory over HTTP like a static tlog-tiles
// host, except that paths under down answer 503.
type flakyServer struct {
	mu   sync.Mutex
	down string
}

func (f *flakyServer) fail(prefix string) {
	f.mu.Lock()
	f.down = prefix
	f.mu.Unlock()
}

func serveLog(t *testing.T, dir string, k Key) (*Client, *flakyServer) {
	t.Helper()
	f := &flakyServer{}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		down := f.down
		f.mu.Unlock()
		if down != "" && strings.HasPrefix(strings.TrimPrefix(r.URL.Path, "/"), down) {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	hf, err := tclient.NewHTTPFetcher(u, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return NewClientFrom(hf, k.Verifier), f
}

// A log that cannot be read is no verdict (reject.ErrUnableToCheck): an
// admission webhook must not deny, nor allow, because the log's host is
// down. A resource the signed tree commits to that the host says is not
// there (404) stays a refusal.
func TestUnreadableLogIsUnableToCheck(t *testing.T) {
	k := testKey(t, "flaky")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, "entry", 4)
	c, srv := serveLog(t, dir, k)
	cp4, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "more", 4)

	unable := func(what string, err error, refusal error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, reject.ErrUnavailable) || !errors.Is(err, reject.ErrUnableToCheck) ||
			errors.Is(err, reject.ErrRefused) || errors.Is(err, refusal) {
			t.Errorf("%s with the host down: %v; want ErrUnavailable, unable to check, not %v", what, err, refusal)
		}
	}
	srv.fail("checkpoint")
	_, err = c.Checkpoint(ctx)
	unable("Checkpoint", err, ErrBadCheckpoint)
	srv.fail("tile/0")
	_, err = c.Checkpoint(ctx) // 4 -> 8 needs a consistency proof from the tiles
	unable("Checkpoint (consistency)", err, ErrConsistency)
	err = c.VerifyInclusion(ctx, []byte("entry-1"), 1, cp4)
	unable("VerifyInclusion", err, ErrInclusion)
	_, err = c.InclusionProof(ctx, 1, cp4.Size)
	unable("InclusionProof", err, ErrInclusion)
	srv.fail("tile/entries")
	_, err = c.Entry(ctx, 1, cp4)
	unable("Entry", err, ErrInclusion)

	// Back up: the same reads verify.
	srv.fail("")
	cp8, err := c.Checkpoint(ctx)
	if err != nil || cp8.Size != 8 {
		t.Fatalf("Checkpoint once the host is back: %v, %v", cp8, err)
	}
	if got, err := c.Entry(ctx, 1, cp8); err != nil || string(got) != "entry-1" {
		t.Fatalf("Entry(1) once the host is back: %q, %v", got, err)
	}

	// Not there (404): refused. The writer is closed first, so that it
	// does not publish the checkpoint again.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	refused := func(what string, err error, want error, r *reject.Reason) {
		t.Helper()
		if !errors.Is(err, want) || !errors.Is(err, r) || !errors.Is(err, reject.ErrRefused) || errors.Is(err, reject.ErrUnableToCheck) {
			t.Errorf("%s: %v; want %v (reject.%v), a refusal", what, err, want, r)
		}
	}
	if err := os.Remove(filepath.Join(dir, layout.EntriesPath(0, layout.PartialTileSize(0, 0, cp8.Size)))); err != nil {
		t.Fatal(err)
	}
	_, err = c.Entry(ctx, 5, cp8)
	refused("Entry of a removed bundle", err, ErrInclusion, reject.ErrMismatch)
	if err := os.Remove(filepath.Join(dir, layout.TilePath(0, 0, layout.PartialTileSize(0, 0, cp8.Size)))); err != nil {
		t.Fatal(err)
	}
	err = c.VerifyInclusion(ctx, []byte("entry-1"), 1, cp8)
	refused("VerifyInclusion over a removed tile", err, ErrInclusion, reject.ErrMismatch)
	if err := os.Remove(filepath.Join(dir, "checkpoint")); err != nil {
		t.Fatal(err)
	}
	_, err = c.Checkpoint(ctx)
	refused("Checkpoint removed", err, ErrBadCheckpoint, reject.ErrSignature)
}

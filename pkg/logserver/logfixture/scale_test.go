package logfixture

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
)

// TestScale is the served log at scale, what CI runs (the million-entry
// measurement is hack/bench/logscale.sh): a fixture of
// STEPSEAL_LOG_SCALE_N documents (default 100 000) built through
// logserver.Server.Add, then opened and served as `stepseal log serve`
// opens it, and checked for correctness only (no timed assertion): every
// search answer verified and complete (a unique subject answers exactly its
// document, a popular one all its entries to the last page), the audit
// rebuilds the index from the log alone and agrees with the server over
// every entry, and the log serves again after a restart.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100 000-entry log")
	}
	n := 100000
	if v := os.Getenv("STEPSEAL_LOG_SCALE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < DefaultPopular {
			t.Fatalf("STEPSEAL_LOG_SCALE_N=%q: want a number of at least %d", v, DefaultPopular)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	signer := signingtest.SignerOf(t, signing.ED25519)
	allow := logserver.Keys{signingtest.Verifier(t, signer)}
	rep, err := Build(ctx, dir, Options{N: n, Signer: signer, Allow: allow, Origin: "scale.stepseal.test/log"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Appended != n || rep.Checkpoint.Size != uint64(n) {
		t.Fatalf("built %d new entries, checkpoint %s; want %d", rep.Appended, rep.Checkpoint, n)
	}
	t.Logf("fixture: %d documents in %s (%.0f/s)", n, rep.Elapsed.Round(time.Millisecond), float64(n)/rep.Elapsed.Seconds())

	key, err := logserver.KeyInDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	serve := func() (*logserver.Client, func()) {
		t0 := time.Now()
		s, err := logserver.Open(ctx, dir, key, logserver.Options{Keys: allow})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Checkpoint().Size; got != uint64(n) {
			t.Fatalf("opened with %d entries, want %d", got, n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- logserver.Serve(sctx, l, s) }()
		t.Logf("serving %d entries %s after opening", n, time.Since(t0).Round(time.Millisecond))
		c, err := logserver.NewClient("http://"+l.Addr().String()+"/", key.Verifier, &http.Client{Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			if err := s.Close(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	c, stop := serve()
	t0 := time.Now()

	// Unique subjects: exactly their document, regenerated.
	for j := 0; j < n; j += n / 200 {
		checkUnique(t, c, signer, j)
	}
	// Every popular subject: a full first page; three of them to the last
	// page, no entry twice.
	for k := range DefaultPopular {
		want := (n-1-k)/DefaultPopular + 1
		q := logserver.Query{Subject: Base(k)}
		p, err := c.Search(ctx, q, 0, 20)
		if err != nil {
			t.Fatalf("search for %s: %v", q, err)
		}
		if len(p.Results) != min(20, want) || p.More != (want > 20) {
			t.Fatalf("search for %s: %d results (more: %t), want %d of %d", q, len(p.Results), p.More, min(20, want), want)
		}
		if k >= 3 {
			continue
		}
		seen := map[uint64]bool{}
		if _, err := c.SearchAll(ctx, q, 0, logserver.MaxLimit, func(r logserver.VerifiedResult) error {
			if seen[r.Index] {
				return fmt.Errorf("log entry %d twice", r.Index)
			}
			seen[r.Index] = true
			return nil
		}); err != nil {
			t.Fatalf("search for %s: %v", q, err)
		}
		if len(seen) != want {
			t.Fatalf("search for %s to its last page: %d entries, want %d", q, len(seen), want)
		}
	}

	t.Logf("searches checked in %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()

	// The audit: the index rebuilt from the log (every inclusion
	// verified), then every entry by kind and a few subjects compared with
	// the server's answers.
	queries := []logserver.Query{{Kind: "provenance"}, {Subject: Base(7)}, {Subject: Artifact("fixture", n/2)}, {RunID: RunID("fixture", n-1)}}
	ar, err := logserver.Audit(ctx, c, filepath.Join(t.TempDir(), "audit.db"), queries)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if ar.Entries != uint64(n) || ar.Queries != len(queries) || len(ar.Aliases) != 0 {
		t.Fatalf("audit: %d entries, %d queries, %d aliases; want %d, %d, 0", ar.Entries, ar.Queries, len(ar.Aliases), n, len(queries))
	}
	if wantResults := n + (n-1-7)/DefaultPopular + 1 + 1 + (n-1)%RunSize + 1; ar.Results != wantResults {
		t.Fatalf("audit compared %d results, want %d", ar.Results, wantResults)
	}
	t.Logf("audit of %d entries, %d results compared, in %s", ar.Entries, ar.Results, time.Since(t0).Round(time.Millisecond))
	stop()

	// Restart: the index is caught up, the log serves the same answers.
	c, stop = serve()
	defer stop()
	checkUnique(t, c, signer, n-1)
	if _, err := c.Search(ctx, logserver.Query{Subject: Base(0)}, 0, 20); err != nil {
		t.Fatal(err)
	}
}

// checkUnique searches for document j's artifact: exactly document j.
func checkUnique(t *testing.T, c *logserver.Client, s signing.Signer, j int) {
	t.Helper()
	ctx := context.Background()
	d, err := Document(ctx, s, "fixture", j, DefaultPopular)
	if err != nil {
		t.Fatal(err)
	}
	q := logserver.Query{Subject: Artifact("fixture", j)}
	p, err := c.Search(ctx, q, 0, 20)
	if err != nil {
		t.Fatalf("search for %s: %v", q, err)
	}
	if len(p.Results) != 1 || p.More || p.Results[0].Entry.Digest != store.Digest(d) {
		t.Fatalf("search for %s: %d results, want exactly document %d (%s)", q, len(p.Results), j, store.Digest(d))
	}
}

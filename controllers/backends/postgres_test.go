package backends

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// The postgres backend opens once per DSN file and log directory, reads the
// connection string from the file, gives log indexes, keeps its log apart
// from a tlog backend's, and no error shows the file's content.
func TestPostgresBackend(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	ctx := context.Background()
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(srv.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var o Stores
	defer o.Close(ctx)
	logDir := filepath.Join(dir, "pglog")
	// Reconciles opening it at once (outside the lock) end with one store.
	opened := make([]any, 8)
	var wg sync.WaitGroup
	for i := range opened {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := o.Postgres(ctx, dsnFile, logDir, "", "stepseal.dev/test")
			if err != nil {
				t.Error(err)
			}
			opened[i] = s
		}()
	}
	wg.Wait()
	s, err := o.Postgres(ctx, dsnFile, logDir, "", "stepseal.dev/test")
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range opened {
		if got != any(s) {
			t.Fatalf("concurrent open %d got another store", i)
		}
	}
	if again, err := o.Postgres(ctx, dsnFile, logDir, "", "stepseal.dev/test"); err != nil || again != s {
		t.Fatalf("second open: %p, %v; want the same store %p", again, err, s)
	}
	d, i, err := s.PutIndexed(ctx, store.Entry{Kind: store.KindLink, Name: "a.b", Data: []byte("x")})
	if err != nil || i != 0 {
		t.Fatalf("PutIndexed = %s, %d, %v", d, i, err)
	}
	if _, err := o.Log(ctx, logDir, "", "stepseal.dev/test"); err == nil || !strings.Contains(err.Error(), "postgres backend's") {
		t.Fatalf("tlog backend on the postgres backend's log: %v", err)
	}

	// A rotated Secret: the file changes, the next open connects anew (here
	// to another database) and the old store is closed.
	if err := os.WriteFile(dsnFile, []byte(srv.NewDatabase(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	rotated, err := o.Postgres(ctx, dsnFile, logDir, "", "stepseal.dev/test")
	if err != nil || rotated == s {
		t.Fatalf("after the file changed: %p, %v; want a new store", rotated, err)
	}
	if _, err := rotated.Fetch(ctx, d); err == nil {
		t.Fatal("the rotated store reads the old database")
	}

	bad := filepath.Join(dir, "bad")
	const secret = "s3cret-Pa55word"
	if err := os.WriteFile(bad, []byte("postgres://stepseal:"+secret+"@127.0.0.1:1/x?connect_timeout=1"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = o.Postgres(ctx, bad, logDir, "", "stepseal.dev/test")
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("unreachable database: %v; want an error naming %s without the password", err, bad)
	}
	if _, err := o.Postgres(ctx, filepath.Join(dir, "missing"), logDir, "", "stepseal.dev/test"); err == nil {
		t.Fatal("missing DSN file accepted")
	}
}

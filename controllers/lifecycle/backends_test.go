package lifecycle_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Every row of the table of backends opens through Signing.Backends as
// the row declares (a Store when it stores, an ImageAttacher when it
// attaches); the tlog store has the optional capabilities (indexed put,
// Close) and the dir store needs no Close; Shared.Close releases the tlog
// directory, which a second store could not open while it was held.
func TestBackendsOpensEveryKind(t *testing.T) {
	dir := t.TempDir()
	srv := pgtest.Start(t, pgtest.Options{})
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(srv.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, served, err := tlog.GenerateKey("example.com/served")
	if err != nil {
		t.Fatal(err)
	}
	servedPub := filepath.Join(dir, "served.pub")
	if err := os.WriteFile(servedPub, []byte(served), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := settings.Parse(map[string]string{
		settings.KeyStoreDir: filepath.Join(dir, "store"), settings.KeyTLogDir: filepath.Join(dir, "tlog"),
		settings.KeyPostgresDSNFile: dsnFile, settings.KeyPostgresLogDir: filepath.Join(dir, "pglog"),
		// Opening the logserver backend contacts nothing.
		settings.KeyLogServerURL: "http://127.0.0.1:9/", settings.KeyLogServerKey: servedPub,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := lifecycle.NewShared()
	r := &lifecycle.Signing{Shared: s}
	ctx := context.Background()
	for _, kind := range settings.BackendKinds() {
		cfg.Backends = []string{kind.Name}
		bs, err := r.Backends(ctx, cfg)
		if err != nil || len(bs) != 1 {
			t.Fatalf("backend %s: %v, %v", kind.Name, bs, err)
		}
		if (bs[0].Store != nil) != kind.Stores || (bs[0].Images != nil) != kind.AttachesImages {
			t.Errorf("backend %s opened as %+v, want stores=%v attaches=%v", kind.Name, bs[0], kind.Stores, kind.AttachesImages)
		}
		_, indexed := bs[0].Store.(store.IndexedPutter)
		_, checkpoints := bs[0].Store.(store.Checkpointer)
		_, closer := bs[0].Store.(store.Closer)
		logged := kind.Name == settings.BackendTLog || kind.Name == settings.BackendPostgres || kind.Name == settings.BackendLogServer
		holds := kind.Name == settings.BackendTLog || kind.Name == settings.BackendPostgres
		if indexed != logged || checkpoints != logged || closer != holds {
			t.Errorf("backend %s: indexed put %v, checkpoint %v, Close %v; want %v, %v, %v", kind.Name, indexed, checkpoints, closer, logged, logged, holds)
		}
	}

	key, err := tlog.ReadKey(filepath.Join(dir, "tlog", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	if second, err := tlogstore.Open(ctx, filepath.Join(dir, "tlog"), key, nil); err == nil {
		_ = second.Close(ctx)
		t.Fatal("a second store opened the tlog directory the Shared holds")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := tlogstore.Open(ctx, filepath.Join(dir, "tlog"), key, nil)
	if err != nil {
		t.Fatalf("after Shared.Close: %v", err)
	}
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}

	cfg.Backends = []string{"s3"}
	if _, err := r.Backends(ctx, cfg); !errors.Is(err, settings.ErrInvalid) || !strings.Contains(err.Error(), `unknown backend "s3"`) {
		t.Errorf("unknown backend: %v, want ErrInvalid naming it", err)
	}
}

// orderStore records the order of Puts and fails one named entry.
type orderStore struct {
	store.Store
	mu   sync.Mutex
	seen []string
	fail string
}

func (o *orderStore) Put(ctx context.Context, e store.Entry) (string, error) {
	if e.Name == o.fail {
		return "", errors.New("disk full")
	}
	o.mu.Lock()
	o.seen = append(o.seen, e.Name)
	o.mu.Unlock()
	return o.Store.Put(ctx, e)
}

// The provenance (last entry) is stored only after every link is: a crash
// or failure in between must never leave a provenance without its links.
func TestTargetsStoreTheLastEntryLast(t *testing.T) {
	ds, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var entries []store.Entry
	for _, n := range []string{"a.link", "b.link", "c.link", "d.link", "run.provenance"} {
		entries = append(entries, store.Entry{Kind: store.KindLink, Name: n, RunID: "r", Data: []byte(n)})
	}
	o := &orderStore{Store: ds, fail: "c.link"}
	if _, err := seal.Put(context.Background(), lifecycle.Targets([]lifecycle.Backend{{Name: "dir", Store: o}, {Name: "oci"}}), entries); err == nil {
		t.Fatal("a failed link Put was not reported")
	}
	for _, n := range o.seen {
		if n == "run.provenance" {
			t.Fatalf("provenance stored although link c.link failed: %v", o.seen)
		}
	}
	o.fail, o.seen = "", nil
	if _, err := seal.Put(context.Background(), lifecycle.Targets([]lifecycle.Backend{{Name: "dir", Store: o}, {Name: "oci"}}), entries); err != nil {
		t.Fatal(err)
	}
	if len(o.seen) != 5 || o.seen[4] != "run.provenance" {
		t.Fatalf("Put order %v, want the provenance last", o.seen)
	}
}

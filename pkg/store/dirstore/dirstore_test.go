package dirstore_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) store.Store {
			s, err := dirstore.Open(filepath.Join(t.TempDir(), "store"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s2, err := dirstore.Open(s.(*dirstore.Store).Root())
			if err != nil {
				t.Fatal(err)
			}
			return s2
		},
		Tamper: func(t *testing.T, s store.Store, d string) {
			p := filepath.Join(s.(*dirstore.Store).Root(), "entries", strings.TrimPrefix(d, "sha256:")+".data")
			if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// A store written before the runs/ index existed gets it built on open, so
// List by run finds its old entries.
func TestIndexesOldStore(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "store")
	s, err := dirstore.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for i, run := range []string{"ns/a", "ns/a", "ns/b"} {
		e := store.Entry{Kind: store.KindLink, Name: run, RunID: run, Data: []byte{byte(i), 'x'}}
		if _, err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(root, "runs")); err != nil {
		t.Fatal(err)
	}
	if s, err = dirstore.Open(root); err != nil {
		t.Fatal(err)
	}
	for run, want := range map[string]int{"ns/a": 2, "ns/b": 1, "ns/c": 0} {
		es, err := s.List(ctx, store.Filter{RunID: run})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != want {
			t.Errorf("List(run %s) = %d entries, want %d", run, len(es), want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "runs", ".indexed")); err != nil {
		t.Errorf("index not marked complete: %v", err)
	}
}

// BenchmarkListRun: finding one run's entries must not read the
// whole store (the controller does it for every TaskRun it signs).
func BenchmarkListRun(b *testing.B) {
	ctx := b.Context()
	s, err := dirstore.Open(filepath.Join(b.TempDir(), "store"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 3000 {
		run := "ns/tr-" + strconv.Itoa(i/6)
		if _, err := s.Put(ctx, store.Entry{Kind: store.KindLink, Name: run, RunID: run, Data: []byte(strconv.Itoa(i))}); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; b.Loop(); i++ {
		es, err := s.List(ctx, store.Filter{RunID: "ns/tr-" + strconv.Itoa(i%500)})
		if err != nil || len(es) != 6 {
			b.Fatalf("List = %d entries, %v", len(es), err)
		}
	}
}

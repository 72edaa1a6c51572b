package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/storetest"
)

func TestDirStoreConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) store.Store {
			s, err := store.NewDirStore(filepath.Join(t.TempDir(), "store"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s2, err := store.NewDirStore(s.(*store.DirStore).Root())
			if err != nil {
				t.Fatal(err)
			}
			return s2
		},
		Tamper: func(t *testing.T, s store.Store, d string) {
			p := filepath.Join(s.(*store.DirStore).Root(), "entries", strings.TrimPrefix(d, "sha256:")+".data")
			if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	})
}

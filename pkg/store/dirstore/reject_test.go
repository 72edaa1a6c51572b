package dirstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// Every failure of a read is a reason of stepseal's shared vocabulary: a
// changed or removed entry is refused (tampered), a directory that cannot
// be read is no verdict at all.
func TestReadFailuresMatchReasons(t *testing.T) {
	subject := "sha256:" + strings.Repeat("5", 64)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, root, h string)
		want   error // the store sentinel
		reason *reject.Reason
	}{
		{"data edited", func(t *testing.T, root, h string) {
			write(t, filepath.Join(root, "entries", h+".data"), "tampered")
		}, store.ErrCorrupt, reject.ErrMismatch},
		{"data removed", func(t *testing.T, root, h string) {
			remove(t, filepath.Join(root, "entries", h+".data"))
		}, store.ErrCorrupt, reject.ErrMismatch},
		{"metadata not JSON", func(t *testing.T, root, h string) {
			write(t, filepath.Join(root, "entries", h+".json"), "{")
		}, store.ErrCorrupt, reject.ErrMismatch},
		{"metadata names another digest", func(t *testing.T, root, h string) {
			write(t, filepath.Join(root, "entries", h+".json"), `{"kind":"link","digest":"sha256:`+strings.Repeat("0", 64)+`"}`)
		}, store.ErrCorrupt, reject.ErrMismatch},
		{"entry removed", func(t *testing.T, root, h string) {
			remove(t, filepath.Join(root, "entries", h+".json"))
		}, store.ErrNotFound, reject.ErrMissing},
		// A directory where a file must be cannot be read, even by root:
		// what a permission or I/O error does, reproducibly.
		{"data unreadable", func(t *testing.T, root, h string) {
			p := filepath.Join(root, "entries", h+".data")
			remove(t, p)
			mkdir(t, p)
		}, store.ErrUnavailable, reject.ErrUnavailable},
		{"metadata unreadable", func(t *testing.T, root, h string) {
			p := filepath.Join(root, "entries", h+".json")
			remove(t, p)
			mkdir(t, p)
		}, store.ErrUnavailable, reject.ErrUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "store")
			s, err := dirstore.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.Put(t.Context(), store.Entry{Kind: store.KindLink, Name: "build.compile", Data: []byte("signed link"), Subjects: []string{subject}})
			if err != nil {
				t.Fatal(err)
			}
			c.damage(t, root, strings.TrimPrefix(d, "sha256:"))
			_, err = s.Fetch(t.Context(), d)
			if !errors.Is(err, c.want) {
				t.Fatalf("Fetch: %v, want %v", err, c.want)
			}
			rejecttest.Is(t, "Fetch", err, c.reason)
		})
	}
}

// A store directory that cannot be created is no verdict either.
func TestOpenUnavailable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	write(t, file, "not a directory")
	_, err := dirstore.Open(filepath.Join(file, "store"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open under a file: %v, want store.ErrUnavailable", err)
	}
	rejecttest.Is(t, "Open under a file", err, reject.ErrUnavailable)
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

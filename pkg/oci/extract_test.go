package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func tarOf(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Name))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(h.Name))
		}
	}
	tw.Close()
	return b.Bytes()
}

// A directory artifact is attacker-controlled input: no entry may write
// outside the extraction directory, through ".." or through a symlink.
func TestExtractTarStaysInside(t *testing.T) {
	for name, tb := range map[string][]byte{
		"dotdot":            tarOf(t, &tar.Header{Name: "../outside", Typeflag: tar.TypeReg, Mode: 0o644}),
		"absolute":          tarOf(t, &tar.Header{Name: "/outside", Typeflag: tar.TypeReg, Mode: 0o644}),
		"symlink-parent":    tarOf(t, &tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: ".."}, &tar.Header{Name: "evil/outside", Typeflag: tar.TypeReg, Mode: 0o644}),
		"symlink-abs":       tarOf(t, &tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "/"}, &tar.Header{Name: "evil/outside", Typeflag: tar.TypeReg, Mode: 0o644}),
		"symlink-overwrite": tarOf(t, &tar.Header{Name: "f", Typeflag: tar.TypeSymlink, Linkname: "../outside"}, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}),
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "in")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractTar(bytes.NewReader(tb), dir)
			if err == nil {
				t.Fatal("extraction succeeded")
			}
			if _, serr := os.Lstat(filepath.Join(parent, "outside")); serr == nil {
				t.Fatalf("wrote outside the directory (%v)", err)
			}
			if name == "dotdot" || name == "absolute" {
				if !errors.Is(err, ErrArtifact) {
					t.Fatalf("%v, want ErrArtifact", err)
				}
			}
		})
	}
}

func FuzzExtractTar(f *testing.F) {
	f.Add(tarOf(f, &tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(tarOf(f, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: ".."}, &tar.Header{Name: "l/x", Typeflag: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "in")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = extractTar(bytes.NewReader(data), dir)
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("extraction wrote beside its directory: %v", entries)
		}
	})
}

package artifact

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/run"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
)

func write(t *testing.T, p string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func digestOf(s string) run.DigestSet {
	d := sha256.Sum256([]byte(s))
	return run.DigestSet{"sha256": hex.EncodeToString(d[:])}
}

// tree builds a workspace-like directory with nested files, symlinks that
// stay inside it, a symlinked directory, and files exclude patterns hit.
func tree(t *testing.T, dir string) {
	write(t, filepath.Join(dir, "src/main.go"), "package main\n")
	write(t, filepath.Join(dir, "src/go.mod"), "module x\n")
	write(t, filepath.Join(dir, "src/pkg/a/a.go"), "package a\n")
	write(t, filepath.Join(dir, "src/pkg/a/debug.log"), "log\n")
	write(t, filepath.Join(dir, "src/keep.log"), "keep\n")
	write(t, filepath.Join(dir, "src/build/out.bin"), "\x00\x01binary")
	write(t, filepath.Join(dir, "src/build/sub/x.o"), "obj")
	write(t, filepath.Join(dir, "src/node_modules/m/index.js"), "js")
	write(t, filepath.Join(dir, "src/empty"), "")
	write(t, filepath.Join(dir, "a.txt"), "top\r\nlevel\n")
	symlink(t, "main.go", filepath.Join(dir, "src/link-to-main"))
	symlink(t, "../../main.go", filepath.Join(dir, "src/pkg/a/up-link"))
	symlink(t, "pkg", filepath.Join(dir, "src/pkgdir-link"))
	symlink(t, "link-to-main", filepath.Join(dir, "src/chain"))
}

// TestHashPathsMatchesInToto compares HashPaths with in-toto-golang's own
// RecordArtifacts (what `in-toto run` records) on the same paths and patterns.
func TestHashPathsMatchesInToto(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir)
	t.Chdir(dir)
	cases := []struct {
		name    string
		paths   []string
		exclude []string
	}{
		{"dir", []string{"src"}, nil},
		{"trailing slash", []string{"src/"}, nil},
		{"dot-slash dir", []string{"./src"}, nil},
		{"cwd", []string{"."}, nil},
		{"file as given", []string{"./a.txt", "src/go.mod"}, nil},
		{"absolute", []string{filepath.Join(dir, "src")}, nil},
		{"several", []string{"src/build", "a.txt", "src/pkg/a/a.go"}, nil},
		{"exclude glob", []string{"src"}, []string{"*.log"}},
		{"exclude re-include", []string{"src"}, []string{"*.log", "!keep.log"}},
		{"exclude dir slash", []string{"src"}, []string{"build/"}},
		{"exclude dir name only", []string{"src"}, []string{"node_modules"}},
		{"exclude anchored", []string{"."}, []string{"/a.txt", "src/pkg/**/*.go"}},
		{"exclude double star", []string{"src"}, []string{"**/sub/*.o", "src/*.mod"}},
		{"exclude symlink path", []string{"src"}, []string{"link-*"}},
		{"exclude bracket", []string{"src"}, []string{"[mg]*.go", "*.[lb]??"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := in_toto.RecordArtifacts(c.paths, []string{"sha256"}, c.exclude, nil, false, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := HashPaths(context.Background(), c.paths, Options{Exclude: c.exclude})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(toInToto(got), want); diff != "" {
				t.Errorf("HashPaths(%q, exclude %q) differs from in-toto RecordArtifacts (-ours +in-toto):\n%s", c.paths, c.exclude, diff)
			}
			if len(got) == 0 {
				t.Error("nothing recorded")
			}
		})
	}
	t.Run("follow symlink dirs", func(t *testing.T) {
		// in-toto-golang reports a false symlink cycle when a followed
		// directory contains a symlink it has already walked, so this tree
		// has none there.
		dir := t.TempDir()
		write(t, filepath.Join(dir, "w/real/a/x.go"), "x")
		write(t, filepath.Join(dir, "w/real/b.txt"), "b")
		symlink(t, "real", filepath.Join(dir, "w/link"))
		t.Chdir(dir)
		for _, exclude := range [][]string{nil, {"real/a/"}, {"*.txt"}} {
			want, err := in_toto.RecordArtifacts([]string{"w"}, []string{"sha256"}, exclude, nil, false, true)
			if err != nil {
				t.Fatal(err)
			}
			got, err := HashPaths(context.Background(), []string{"w"}, Options{FollowSymlinkDirs: true, Exclude: exclude})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(toInToto(got), want); diff != "" {
				t.Errorf("exclude %q (-ours +in-toto):\n%s", exclude, diff)
			}
		}
		got, err := HashPaths(context.Background(), []string{"w"}, Options{FollowSymlinkDirs: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["w/link/a/x.go"]; !ok {
			t.Errorf("followed directory not recorded at the link path: %v", got.Names())
		}
	})
}

func toInToto(a run.Artifacts) map[string]in_toto.HashObj {
	out := map[string]in_toto.HashObj{}
	for k, v := range a {
		out[k] = in_toto.HashObj(v)
	}
	return out
}

func TestHashURIs(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir)
	got, err := Hash(context.Background(), filepath.Join(dir, "src"), "source", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := run.Artifacts{
		"source/main.go":                 digestOf("package main\n"),
		"source/go.mod":                  digestOf("module x\n"),
		"source/pkg/a/a.go":              digestOf("package a\n"),
		"source/pkg/a/debug.log":         digestOf("log\n"),
		"source/pkg/a/up-link":           digestOf("package main\n"),
		"source/keep.log":                digestOf("keep\n"),
		"source/build/out.bin":           digestOf("\x00\x01binary"),
		"source/build/sub/x.o":           digestOf("obj"),
		"source/node_modules/m/index.js": digestOf("js"),
		"source/empty":                   digestOf(""),
		"source/link-to-main":            digestOf("package main\n"),
		"source/chain":                   digestOf("package main\n"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A subPath-style prefix (trailing slash tolerated), and the empty prefix.
	got, err = Hash(context.Background(), filepath.Join(dir, "src/build"), "source/build/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"source/build/out.bin", "source/build/sub/x.o"}, got.Names()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got, err = Hash(context.Background(), filepath.Join(dir, "src/build"), "", Options{Exclude: []string{"*.o"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"out.bin"}, got.Names()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Rooted lower, the link that was inside src/ now leaves the root.
	if _, err := Hash(context.Background(), filepath.Join(dir, "src/pkg"), "source/pkg", Options{}); !errors.Is(err, ErrSymlinkEscape) {
		t.Errorf("err = %v, want ErrSymlinkEscape for source/pkg/a/up-link", err)
	}
}

func TestSymlinkEscapes(t *testing.T) {
	for _, c := range []struct {
		name, link string
		target     func(dir string) string
	}{
		{"dotdot", "ws/sub/evil", func(string) string { return "../../secret" }},
		{"absolute outside", "ws/evil", func(dir string) string { return filepath.Join(dir, "secret") }},
		{"absolute inside", "ws/evil", func(dir string) string { return filepath.Join(dir, "ws/ok.txt") }},
		{"out and back in", "ws/evil", func(string) string { return "../ws/ok.txt" }},
		{"dotdot directory", "ws/evil", func(string) string { return ".." }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "secret"), "secret")
			write(t, filepath.Join(dir, "ws/ok.txt"), "ok")
			symlink(t, c.target(dir), filepath.Join(dir, c.link))
			_, err := Hash(context.Background(), filepath.Join(dir, "ws"), "source", Options{FollowSymlinkDirs: true})
			if !errors.Is(err, ErrSymlinkEscape) {
				t.Fatalf("err = %v, want ErrSymlinkEscape", err)
			}
			rejecttest.Is(t, "escaping symlink", err, reject.ErrUnsupported)
			uri := "source/" + strings.TrimPrefix(c.link, "ws/")
			if !strings.Contains(err.Error(), uri) {
				t.Errorf("error %q does not name the link %s", err, uri)
			}
		})
	}
	t.Run("chain whose second hop escapes", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "secret"), "secret")
		symlink(t, "../secret", filepath.Join(dir, "ws/b"))
		symlink(t, "b", filepath.Join(dir, "ws/a"))
		_, err := Hash(context.Background(), filepath.Join(dir, "ws"), "w", Options{})
		if !errors.Is(err, ErrSymlinkEscape) {
			t.Fatalf("err = %v, want ErrSymlinkEscape", err)
		}
	})
	t.Run("escaping link excluded is not looked at", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "ws/ok.txt"), "ok")
		symlink(t, "/etc/passwd", filepath.Join(dir, "ws/evil"))
		got, err := Hash(context.Background(), filepath.Join(dir, "ws"), "w", Options{Exclude: []string{"evil"}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"w/ok.txt"}, got.Names()); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("dangling", func(t *testing.T) {
		dir := t.TempDir()
		symlink(t, "nothere", filepath.Join(dir, "ws/dangling"))
		_, err := Hash(context.Background(), filepath.Join(dir, "ws"), "w", Options{})
		if err == nil || !strings.Contains(err.Error(), "w/dangling") {
			t.Fatalf("err = %v, want an error naming w/dangling", err)
		}
	})
}

func TestSymlinkCycle(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a/f"), "f")
	symlink(t, "..", filepath.Join(dir, "a/b/up"))
	_, err := Hash(context.Background(), dir, "w", Options{FollowSymlinkDirs: true})
	if !errors.Is(err, ErrSymlinkCycle) {
		t.Fatalf("err = %v, want ErrSymlinkCycle", err)
	}
	rejecttest.Is(t, "symlink cycle", err, reject.ErrMalformed)
	got, err := Hash(context.Background(), dir, "w", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"w/a/f"}, got.Names()); diff != "" {
		t.Error(diff)
	}
}

// TestSpecialFilesSkipped: a FIFO would block a reader forever and a socket
// cannot be read; both are skipped without being opened.
func TestSpecialFilesSkipped(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "f"), "x")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, "fifo", filepath.Join(dir, "fifo-link"))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := Hash(context.Background(), dir, "w", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"w/f"}, got.Names()); diff != "" {
		t.Error(diff)
	}
	got, err = HashPaths(context.Background(), []string{filepath.Join(dir, "fifo")}, Options{})
	if err != nil || len(got) != 0 {
		t.Errorf("HashPaths(fifo) = %v, %v; want nothing", got, err)
	}
}

func TestLargeFilesAndWorkers(t *testing.T) {
	dir := t.TempDir()
	want := run.Artifacts{}
	for i, size := range []int{0, 1, bufSize - 1, bufSize, bufSize + 1, 3*bufSize + 17, 5 << 20} {
		data := make([]byte, size)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		name := filepath.Join("d", strings.Repeat("x", i+1))
		write(t, filepath.Join(dir, name), string(data))
		want["w/"+filepath.ToSlash(name)] = digestOf(string(data))
	}
	for _, workers := range []int{1, 2, 7, 100} {
		got, err := Hash(context.Background(), dir, "w", Options{Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("workers=%d (-want +got):\n%s", workers, diff)
		}
	}
}

func TestCanceled(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "f"), strings.Repeat("x", 1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Hash(ctx, dir, "w", Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := Hash(context.Background(), filepath.Join(dir, "missing"), "w", Options{}); err == nil {
		t.Error("missing root: no error")
	}
	write(t, filepath.Join(dir, "file"), "x")
	if _, err := Hash(context.Background(), filepath.Join(dir, "file"), "w", Options{}); err == nil {
		t.Error("root is a file: no error")
	}
	if _, err := HashPaths(context.Background(), []string{filepath.Join(dir, "missing")}, Options{}); err == nil {
		t.Error("HashPaths of a missing path: no error")
	}
}

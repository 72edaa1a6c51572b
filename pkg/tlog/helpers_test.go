package tlog

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

var ctx = context.Background()

func testKey(t testing.TB, origin string) Key {
	t.Helper()
	skey, _, err := GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t testing.TB, dir string, k Key) *Log {
	t.Helper()
	l, err := Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(ctx) })
	return l
}

func appendN(t testing.TB, l *Log, prefix string, n int) {
	t.Helper()
	data := make([][]byte, n)
	for i := range data {
		data[i] = fmt.Appendf(nil, "%s-%d", prefix, i)
	}
	if _, err := l.AppendMany(ctx, data); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies a log directory (a snapshot an attacker could restore).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

func testingProcs() int { return runtime.GOMAXPROCS(0) }

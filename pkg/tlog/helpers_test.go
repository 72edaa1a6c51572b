package tlog

import (
	"context"
	"fmt"
	"os"
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
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

func testingProcs() int { return runtime.GOMAXPROCS(0) }

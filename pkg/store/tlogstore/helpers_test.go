package tlogstore

import (
	"os"
	"sort"
	"testing"
)

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedLines(m map[string]indexLine) []indexLine {
	var out []indexLine
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

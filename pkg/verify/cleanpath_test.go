package verify

import (
	"path"
	"testing"
)

var cleanPathCases = []string{
	"", "/", "//", ".", "..", "a", "a/b", "/a/b", "a/", "/a/", "a//b", "./a", "a/.", "a/./b",
	"../a", "a/..", "a/../b", "/..", "/.", "...", "a/...", ".a", "a./b", "a/.b/..c", "//a",
	"source/pkg00/file00000.go", "a/b/c/", "\x00", "a\\b", "é/ü",
}

// TestIsCleanPath: isCleanPath never says clean when path.Clean changes
// the name, and says clean for the usual names.
func TestIsCleanPath(t *testing.T) {
	for _, s := range cleanPathCases {
		if isCleanPath(s) && path.Clean(s) != s {
			t.Errorf("isCleanPath(%q) = true, but path.Clean gives %q", s, path.Clean(s))
		}
	}
	for _, s := range []string{"a", "a/b", "/a/b", "source/pkg00/file00000.go", "...", ".a", "a/.b/..c"} {
		if !isCleanPath(s) {
			t.Errorf("isCleanPath(%q) = false, want true", s)
		}
	}
}

// FuzzIsCleanPath: isCleanPath(s) implies path.Clean(s) == s.
func FuzzIsCleanPath(f *testing.F) {
	for _, s := range cleanPathCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if isCleanPath(s) && path.Clean(s) != s {
			t.Fatalf("isCleanPath(%q) = true, but path.Clean gives %q", s, path.Clean(s))
		}
	})
}

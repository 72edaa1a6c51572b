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

// The reference (byte-at-a-time) forms of the fast paths below.

func refCanonString(s string) []byte {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func refSkipHex(s string, i int) int {
	for i < len(s) && isHexByte[s[i]] {
		i++
	}
	return i
}

func refWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func checkFastPaths(t *testing.T, s string, at uint16) {
	if got, want := appendCanonString([]byte("x"), s), append([]byte("x"), refCanonString(s)...); string(got) != string(want) {
		t.Fatalf("appendCanonString(%q) = %q, want %q", s, got, want)
	}
	i := int(at) % (len(s) + 1)
	if got, want := skipHex(s, i), refSkipHex(s, i); got != want {
		t.Fatalf("skipHex(%q, %d) = %d, want %d", s, i, got, want)
	}
	p := &parser{src: s, pos: i}
	if p.ws(); p.pos != refWS(s, i) {
		t.Fatalf("ws(%q) from %d stops at %d, want %d", s, i, p.pos, refWS(s, i))
	}
}

var fastPathCases = []string{
	"", "a", `"`, `\`, `a"b\c`, "é\"", "0123456789abcdefABCDEF", "0123456789abcdef0123456789abcdefg",
	"         \n   \t  x", "                                 ", " \r\n\t        \n        z", "abcdefgh12345678",
}

// TestFastPaths: the word-at-a-time whitespace and hex scans and the
// canonical string writer agree with their byte-at-a-time forms.
func TestFastPaths(t *testing.T) {
	for _, s := range fastPathCases {
		for at := range uint16(len(s) + 1) {
			checkFastPaths(t, s, at)
		}
	}
}

// FuzzFastPaths is TestFastPaths on any input.
func FuzzFastPaths(f *testing.F) {
	for _, s := range fastPathCases {
		f.Add(s, uint16(0))
	}
	f.Fuzz(checkFastPaths)
}

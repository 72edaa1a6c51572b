package artifact

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shibumi/go-pathspec"
)

// FuzzExcludeMatchesGoPathspec: our precompiled matcher must decide every
// (patterns, path) exactly as go-pathspec's GitIgnore, which in-toto-run uses.
func FuzzExcludeMatchesGoPathspec(f *testing.F) {
	for _, s := range [][2]string{
		{"*.log", "src/a/debug.log"},
		{"*.log\n!keep.log", "src/keep.log"},
		{"build/", "src/build/sub/x.o"},
		{"node_modules", "src/node_modules/m/index.js"},
		{"/a.txt", "a.txt"},
		{"src/pkg/**/*.go", "src/pkg/a/a.go"},
		{"**/sub/*.o\nsrc/*.mod", "src/build/sub/x.o"},
		{"[mg]*.go\n*.[lb]??", "src/main.go"},
		{"[!a]*\n\\!x\n\\#y", "!x"},
		{"**", "a"},
		{"a/**", "a/b/c"},
		{"[", "["},
		{"a\\", "a"},
		{"[]a]", "]"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, patterns, name string) {
		pats := strings.Split(patterns, "\n")
		m, err := newMatcher(pats)
		want, wantErr := gitIgnore(pats, name)
		if err != nil {
			// Deliberately stricter: a bare "!" (or "!\\") negates nothing; go-pathspec
			// accepts it silently, we refuse it as the typo it is.
			if wantErr == nil && containsBareBang(pats) {
				return
			}
			// Deliberately stricter: we refuse a pattern go-pathspec errors or
			// panics on, even where it never reaches it because an earlier "!"
			// pattern matched first (["!0", ""] with "0").
			if wantErr == nil && breaksLibrary(pats) {
				return
			}
			if wantErr == nil {
				t.Fatalf("patterns %q: we reject (%v), go-pathspec accepts", pats, err)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("patterns %q: go-pathspec errors (%v), we accept", pats, wantErr)
		}
		if got := m.excluded(name); got != want {
			t.Fatalf("patterns %q, name %q: excluded = %v, go-pathspec says %v", pats, name, got, want)
		}
	})
}

// gitIgnore calls the library, turning its panic on a trailing "[" into an
// error: in-toto-run crashes there, we refuse the pattern.
func gitIgnore(pats []string, name string) (ignore bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-pathspec panicked: %v", r)
		}
	}()
	return pathspec.GitIgnore(pats, name)
}

// breaksLibrary reports whether go-pathspec fails on one of pats alone.
func breaksLibrary(pats []string) bool {
	for _, p := range pats {
		if _, err := gitIgnore([]string{p}, "x"); err != nil {
			return true
		}
	}
	return false
}

func containsBareBang(pats []string) bool {
	for _, p := range pats {
		if rest, ok := strings.CutPrefix(p, "!"); ok && strings.TrimPrefix(rest, "\\") == "" {
			return true
		}
	}
	return false
}

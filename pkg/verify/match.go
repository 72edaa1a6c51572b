package verify

// The glob matcher below is in-toto-golang v0.11.0's in_toto/match.go
// (Apache License 2.0, copyright the in-toto authors; itself derived from
// Go's path.Match), copied unchanged except for names so that artifact
// patterns match exactly as in-toto-golang matches them: unlike path.Match,
// '*' also matches '/'. pattern.match adds fast paths for the common shapes
// whose result is provably the same (see TestPatternFastPaths).

import (
	"errors"
	"strings"
	"unicode/utf8"
)

var errBadPattern = errors.New("syntax error in pattern")

// globMatch is in-toto-golang's match(pattern, name).
func globMatch(pattern, name string) (matched bool, err error) {
Pattern:
	for len(pattern) > 0 {
		var star bool
		var chunk string
		star, chunk, pattern = scanChunk(pattern)
		if star && chunk == "" {
			// Trailing * matches everything
			return true, nil
		}
		// Look for match at current position.
		t, ok, err := matchChunk(chunk, name)
		// if we're the last chunk, make sure we've exhausted the name
		// otherwise we'll give a false result even if we could still match
		// using the star
		if ok && (len(t) == 0 || len(pattern) > 0) {
			name = t
			continue
		}
		if err != nil {
			return false, err
		}
		if star {
			// Look for match skipping i+1 bytes.
			for i := 0; i < len(name); i++ {
				t, ok, err := matchChunk(chunk, name[i+1:])
				if ok {
					// if we're the last chunk, make sure we exhausted the name
					if len(pattern) == 0 && len(t) > 0 {
						continue
					}
					name = t
					continue Pattern
				}
				if err != nil {
					return false, err
				}
			}
		}
		// Before returning false with no error,
		// check that the remainder of the pattern is syntactically valid.
		for len(pattern) > 0 {
			_, chunk, pattern = scanChunk(pattern)
			if _, _, err := matchChunk(chunk, ""); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	return len(name) == 0, nil
}

func scanChunk(pattern string) (star bool, chunk, rest string) {
	for len(pattern) > 0 && pattern[0] == '*' {
		pattern = pattern[1:]
		star = true
	}
	inrange := false
	var i int
Scan:
	for i = 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			if i+1 < len(pattern) {
				i++
			}
		case '[':
			inrange = true
		case ']':
			inrange = false
		case '*':
			if !inrange {
				break Scan
			}
		}
	}
	return star, pattern[0:i], pattern[i:]
}

func matchChunk(chunk, s string) (rest string, ok bool, err error) {
	failed := false
	for len(chunk) > 0 {
		if !failed && len(s) == 0 {
			failed = true
		}
		switch chunk[0] {
		case '[':
			var r rune
			if !failed {
				var n int
				r, n = utf8.DecodeRuneInString(s)
				s = s[n:]
			}
			chunk = chunk[1:]
			negated := false
			if len(chunk) > 0 && chunk[0] == '!' {
				negated = true
				chunk = chunk[1:]
			}
			match := false
			nrange := 0
			for {
				if len(chunk) > 0 && chunk[0] == ']' && nrange > 0 {
					chunk = chunk[1:]
					break
				}
				var lo, hi rune
				if lo, chunk, err = getEsc(chunk); err != nil {
					return "", false, err
				}
				hi = lo
				if chunk[0] == '-' {
					if hi, chunk, err = getEsc(chunk[1:]); err != nil {
						return "", false, err
					}
				}
				if lo <= r && r <= hi {
					match = true
				}
				nrange++
			}
			if match == negated {
				failed = true
			}

		case '?':
			if !failed {
				_, n := utf8.DecodeRuneInString(s)
				s = s[n:]
			}
			chunk = chunk[1:]

		case '\\':
			chunk = chunk[1:]
			if len(chunk) == 0 {
				return "", false, errBadPattern
			}
			fallthrough

		default:
			if !failed {
				if chunk[0] != s[0] {
					failed = true
				}
				s = s[1:]
			}
			chunk = chunk[1:]
		}
	}
	if failed {
		return "", false, nil
	}
	return s, true, nil
}

func getEsc(chunk string) (r rune, nchunk string, err error) {
	if len(chunk) == 0 || chunk[0] == '-' || chunk[0] == ']' {
		err = errBadPattern
		return
	}
	if chunk[0] == '\\' {
		chunk = chunk[1:]
		if len(chunk) == 0 {
			err = errBadPattern
			return
		}
	}
	r, n := utf8.DecodeRuneInString(chunk)
	if r == utf8.RuneError && n == 1 {
		err = errBadPattern
	}
	nchunk = chunk[n:]
	if len(nchunk) == 0 {
		err = errBadPattern
	}
	return
}

// pattern is a compiled artifact pattern.
type pattern struct {
	kind patternKind
	lit  string // the literal (exact) or the literal prefix (prefix)
	raw  string
}

type patternKind uint8

const (
	patGlob   patternKind = iota // anything else: in-toto's matcher
	patExact                     // no metacharacter: string equality
	patPrefix                    // literal followed only by '*'s: strings.HasPrefix
)

// compilePattern recognises the shapes whose match result is the same as
// globMatch's with a cheaper test. A match error is a non-match, as in
// in-toto-golang (Set.Filter and verifyMatchRule both treat it so).
func compilePattern(p string) pattern {
	i := strings.IndexAny(p, `*?[\`)
	switch {
	case i < 0:
		return pattern{kind: patExact, lit: p, raw: p}
	case p[i] == '*' && strings.Trim(p[i:], "*") == "":
		return pattern{kind: patPrefix, lit: p[:i], raw: p}
	}
	return pattern{kind: patGlob, raw: p}
}

func (p *pattern) match(name string) bool {
	switch p.kind {
	case patExact:
		return name == p.lit
	case patPrefix:
		return strings.HasPrefix(name, p.lit)
	}
	ok, err := globMatch(p.raw, name)
	return ok && err == nil
}

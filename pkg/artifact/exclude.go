package artifact

// The pattern translation below is go-pathspec's (github.com/shibumi/go-pathspec
// v1.3.0, gitignore.go), the library in-toto-golang's `in-toto run --exclude`
// uses, copied so each pattern's regular expression is compiled once per hash
// run instead of once per pattern per file (pathspec.GitIgnore recompiles on
// every call, which halved throughput on trees of small files).
// FuzzExcludeMatchesGoPathspec checks it against the library itself.
//
// Copyright 2014, Sander van Harmelen
// Copyright 2020, Christian Rebischke
// Licensed under the Apache License, Version 2.0.

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

type excludePattern struct {
	re      *regexp.Regexp
	include bool
}

// matcher decides exclusion exactly as pathspec.GitIgnore(patterns, name)
// does, including its quirk that the first matching "!" pattern wins.
type matcher []excludePattern

func newMatcher(patterns []string) (matcher, error) {
	m := make(matcher, 0, len(patterns))
	for _, p := range patterns {
		re, include, err := parsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("artifact: exclude pattern %q: %w", p, err)
		}
		c, err := regexp.Compile(re)
		if err != nil {
			return nil, fmt.Errorf("artifact: exclude pattern %q: %w", p, err)
		}
		m = append(m, excludePattern{re: c, include: include})
	}
	return m, nil
}

func (m matcher) excluded(name string) bool {
	ignore := false
	for _, p := range m {
		if p.re.MatchString(name) {
			if p.include {
				return false
			}
			ignore = true
		}
	}
	return ignore
}

func parsePattern(pattern string) (regex string, include bool, err error) {
	if strings.HasPrefix(pattern, "!") {
		pattern = pattern[1:]
		include = true
	}
	pattern = strings.TrimPrefix(pattern, "\\")
	patternSegs := strings.Split(pattern, "/")
	if patternSegs[0] == "" {
		patternSegs = patternSegs[1:]
		if len(patternSegs) == 0 {
			// go-pathspec indexes an empty slice here and panics.
			return "", false, errors.New("empty pattern")
		}
	} else if patternSegs[0] != "**" {
		patternSegs = append([]string{"**"}, patternSegs...)
	}
	if patternSegs[len(patternSegs)-1] == "" {
		patternSegs[len(patternSegs)-1] = "**"
	}
	var expr bytes.Buffer
	expr.WriteString("^")
	needSlash := false
	for i, seg := range patternSegs {
		switch seg {
		case "**":
			switch {
			case i == 0 && i == len(patternSegs)-1:
				expr.WriteString(".+")
			case i == 0:
				expr.WriteString("(?:.+/)?")
				needSlash = false
			case i == len(patternSegs)-1:
				expr.WriteString("/.+")
			default:
				expr.WriteString("(?:/.+)?")
				needSlash = true
			}
		case "*":
			if needSlash {
				expr.WriteString("/")
			}
			expr.WriteString("[^/]+")
			needSlash = true
		default:
			if needSlash {
				expr.WriteString("/")
			}
			g, err := translateGlob(seg)
			if err != nil {
				return "", false, err
			}
			expr.WriteString(g)
			needSlash = true
		}
	}
	expr.WriteString("$")
	return expr.String(), include, nil
}

func translateGlob(glob string) (string, error) {
	var regex bytes.Buffer
	escape := false
	for i := 0; i < len(glob); i++ {
		char := glob[i]
		switch {
		case escape:
			escape = false
			regex.WriteString(regexp.QuoteMeta(string(char)))
		case char == '\\':
			escape = true
		case char == '*':
			regex.WriteString("[^/]*")
		case char == '?':
			regex.WriteString("[^/]")
		case char == '[':
			if i == len(glob)-1 {
				// go-pathspec indexes past the end here and panics.
				return "", errors.New("unterminated bracket expression")
			}
			regex.WriteString(translateBracketExpression(&i, glob))
		default:
			regex.WriteString(regexp.QuoteMeta(string(char)))
		}
	}
	return regex.String(), nil
}

func translateBracketExpression(i *int, glob string) string {
	var regex string
	*i++
	j := *i
	if j < len(glob) && glob[j] == '!' {
		j++
	}
	if j < len(glob) && glob[j] == ']' {
		j++
	}
	for j < len(glob) && glob[j] != ']' {
		j++
	}
	if j < len(glob) {
		if glob[*i] == '!' {
			// go-pathspec drops the negation here, so "[!a]" matches "a";
			// kept so our exclusions equal in-toto-run's.
			*i++
		}
		regex = regexp.QuoteMeta(glob[*i:j])
		*i = j
	} else {
		regex = regexp.QuoteMeta(string(glob[*i]))
	}
	return "[" + regex + "]"
}

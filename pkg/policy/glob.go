package policy

import (
	"fmt"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// maxDoubleStar bounds the backtracking of "**" segments.
const maxDoubleStar = 4

// pattern is a compiled artifact match: segments separated by "/", where a
// segment "**" matches any number of segments (zero included) and any other
// segment is a path.Match pattern confined to one segment ("*" never crosses
// a "/").
type pattern struct {
	text string
	segs []string
}

func compilePattern(p string) (pattern, error) {
	if p == "" {
		return pattern{}, fmt.Errorf("empty pattern")
	}
	if p != strings.TrimSpace(p) {
		return pattern{}, fmt.Errorf("pattern %q has leading or trailing space", p)
	}
	lower := strings.ToLower(p)
	segs := strings.Split(lower, "/")
	var out []string
	stars := 0
	for _, s := range segs {
		if s == "" {
			return pattern{}, fmt.Errorf("pattern %q has an empty path segment", p)
		}
		if s == "**" {
			if len(out) > 0 && out[len(out)-1] == "**" {
				continue // "**/**" is "**"
			}
			stars++
			out = append(out, s)
			continue
		}
		if strings.Contains(s, "**") {
			return pattern{}, fmt.Errorf("pattern %q: \"**\" must be a whole path segment", p)
		}
		if _, err := path.Match(s, ""); err != nil {
			return pattern{}, fmt.Errorf("pattern %q: segment %q: %w", p, s, err)
		}
		out = append(out, s)
	}
	if stars > maxDoubleStar {
		return pattern{}, fmt.Errorf("pattern %q has more than %d \"**\" segments", p, maxDoubleStar)
	}
	return pattern{text: p, segs: out}, nil
}

func (p pattern) match(repo string) bool {
	return matchSegs(p.segs, strings.Split(repo, "/"))
}

func matchSegs(pat, ref []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(ref); i++ {
				if matchSegs(pat[1:], ref[i:]) {
					return true
				}
			}
			return false
		}
		if len(ref) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], ref[0]); !ok {
			return false
		}
		pat, ref = pat[1:], ref[1:]
	}
	return len(ref) == 0
}

// Repository normalizes an image reference to the repository that rules match:
// tag and digest stripped, registry host included, lower case, with
// go-containerregistry's defaults (Docker Hub is "index.docker.io", its
// official images gain "library/").
func Repository(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		// A bare repository ("host/repo") is also accepted.
		repo, rerr := name.NewRepository(ref)
		if rerr != nil {
			return "", fmt.Errorf("%w: reference %q: %w", ErrInvalid, ref, err)
		}
		return strings.ToLower(repo.Name()), nil
	}
	return strings.ToLower(r.Context().Name()), nil
}

// Glob is a compiled repository pattern with the platform policy's
// semantics ("*" within one path segment, "**" across any number of them,
// lower case), for other policies over image repositories to share.
type Glob struct{ p pattern }

// CompileGlob compiles a repository pattern as artifact rules do.
func CompileGlob(p string) (Glob, error) {
	c, err := compilePattern(p)
	if err != nil {
		return Glob{}, err
	}
	return Glob{p: c}, nil
}

// Match reports whether repo (normalized with Repository) matches.
func (g Glob) Match(repo string) bool { return g.p.segs != nil && g.p.match(repo) }

// String is the pattern as written.
func (g Glob) String() string { return g.p.text }

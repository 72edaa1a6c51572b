package repo

import (
	"fmt"
	"strings"

	"github.com/stepseal/stepseal/pkg/trust"
)

// Top-level role names: never a delegated role's name.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// CheckRoleName refuses a delegated role name outside [a-z0-9][a-z0-9-]{0,62}
// or one of the four top-level names: such names are file-, URL- and
// OCI-tag-safe, so a role's file name never needs escaping.
func CheckRoleName(name string) error {
	switch name {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
		return &Error{Kind: ErrRoleName, Role: name, Detail: "reserved for a top-level role"}
	}
	if !trust.ValidRoleName(name) { // the client's rule, checked again there
		return &Error{Kind: ErrRoleName, Role: name, Detail: "want [a-z0-9][a-z0-9-]{0,62}"}
	}
	return nil
}

// CheckPattern refuses a delegation pattern other than "/"-separated
// literal segments and whole-segment "*": with only these, whether two
// patterns can match a common path is decidable segment by segment.
func CheckPattern(p string) error {
	if p == "" || strings.HasPrefix(p, "/") {
		return &Error{Kind: ErrPattern, Path: p, Detail: "must be a relative path"}
	}
	for _, s := range strings.Split(p, "/") {
		switch {
		case s == "":
			return &Error{Kind: ErrPattern, Path: p, Detail: "empty segment"}
		case s == "." || s == "..":
			return &Error{Kind: ErrPattern, Path: p, Detail: "dot segment"}
		case s == "*":
		case strings.ContainsAny(s, `*?[]\`):
			return &Error{Kind: ErrPattern, Path: p, Detail: fmt.Sprintf("segment %q: only literal segments and a whole-segment * are allowed", s)}
		}
	}
	return nil
}

// CheckTargetPath refuses a target path that is not a clean relative path.
func CheckTargetPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || len(p) > 1024 {
		return &Error{Kind: ErrMalformed, Path: p, Detail: "target path must be a relative path of at most 1024 bytes"}
	}
	for _, s := range strings.Split(p, "/") {
		if s == "" || s == "." || s == ".." {
			return &Error{Kind: ErrMalformed, Path: p, Detail: "empty or dot segment in target path"}
		}
	}
	return nil
}

// patternsOverlap reports whether two checked patterns can match one path:
// same number of segments and, segment by segment, equal or either "*".
func patternsOverlap(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if as[i] != bs[i] && as[i] != "*" && bs[i] != "*" {
			return false
		}
	}
	return true
}

// patternCovers reports whether every path child matches is matched by
// parent.
func patternCovers(parent, child string) bool {
	ps, cs := strings.Split(parent, "/"), strings.Split(child, "/")
	if len(ps) != len(cs) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != cs[i] {
			return false
		}
	}
	return true
}

// pathMatches reports whether a target path matches a checked pattern, as
// TUF clients match (one glob per segment, equal segment counts).
func pathMatches(pattern, path string) bool {
	ps, ts := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(ts) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != ts[i] {
			return false
		}
	}
	return true
}

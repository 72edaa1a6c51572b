package seal_test

import (
	"testing"

	"github.com/stepseal/stepseal/pkg/seal"
)

// A failed attempt's link name is distinct from every step link name: it
// parses as an attempt, never as a step's link, and back.
func TestAttemptLinkName(t *testing.T) {
	const id = "0123456789abcdef"
	for _, n := range []int{1, 2, 10, 123456789} {
		name := seal.AttemptLinkName("build.compile", id, n)
		if _, _, ok := seal.ParseLinkName(name); ok {
			t.Errorf("%s is taken for a step link", name)
		}
		step, short, got, ok := seal.ParseAttemptLinkName(name)
		if !ok || step != "build.compile" || short != id[:8] || got != n {
			t.Errorf("ParseAttemptLinkName(%s) = %q %q %d %v", name, step, short, got, ok)
		}
	}
	for _, name := range []string{
		seal.LinkName("build.compile", id),
		seal.LinkName("build.attempt-1", id),
		"build.compile.01234567.attempt-0.link",
		"build.compile.01234567.attempt-01.link",
		"build.compile.01234567.attempt-x.link",
		"build.compile.0123.attempt-1.link",
		"build.compile.01234567.attempt-1.lnk",
	} {
		if _, _, _, ok := seal.ParseAttemptLinkName(name); ok {
			t.Errorf("%s parsed as an attempt link", name)
		}
	}
}

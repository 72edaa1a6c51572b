package attest

import (
	"fmt"
	"sort"
	"strings"
	"unicode"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Layout readme directives: the lines of an in-toto layout's readme that
// stepseal reads. The readme is part of the signed layout, so the owners'
// signature covers them, and in-toto-golang ignores the readme entirely, so
// a layout carrying them is still an in-toto layout its CLI verifies. (A
// custom field in a step would be dropped by in-toto-golang's decoder, which
// then re-encodes the struct to check the owners' signature: the check would
// fail. An extra artifact rule would change what in-toto-golang matches.)
const (
	// ReadmeDirectivePrefix starts every directive line. A line with this
	// prefix that is not a known directive makes the readme invalid: a
	// verifier refuses what it cannot read rather than ignore it.
	ReadmeDirectivePrefix = "stepseal.dev/"
	// ReadmeOnErrorContinue starts a line naming one step that may fail:
	// its link may record a non-zero return-value (Tekton's
	// `onError: continue`). "stepseal.dev/on-error-continue: test.lint".
	ReadmeOnErrorContinue = ReadmeDirectivePrefix + "on-error-continue: "
)

// ErrReadme marks a layout readme whose directives cannot be read
// (reject.ErrMalformed).
var ErrReadme = reject.Sentinel(reject.ErrMalformed, "invalid layout readme directive")

// ReadmeDirectives is what a layout readme tells stepseal's verifier.
type ReadmeDirectives struct {
	// OnErrorContinue are the steps that may fail, sorted.
	OnErrorContinue []string
}

// OnErrorContinueLines returns the readme lines that let steps fail, one per
// step in sorted order, each ending in a newline; "" for no steps.
func OnErrorContinueLines(steps []string) string {
	s := append([]string(nil), steps...)
	sort.Strings(s)
	var b strings.Builder
	for _, name := range s {
		b.WriteString(ReadmeOnErrorContinue)
		b.WriteString(name)
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseReadme reads the directives of a layout readme. Lines not starting
// with ReadmeDirectivePrefix are free text and ignored. A directive line must
// be exactly a known directive followed by a step name without surrounding
// space or control characters; a step named twice, an empty name or an
// unknown directive is an error (ErrReadme).
func ParseReadme(readme string) (ReadmeDirectives, error) {
	var d ReadmeDirectives
	seen := map[string]bool{}
	for i, line := range strings.Split(readme, "\n") {
		if !strings.HasPrefix(line, ReadmeDirectivePrefix) {
			continue
		}
		name, ok := strings.CutPrefix(line, ReadmeOnErrorContinue)
		if !ok {
			return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %q is not a directive stepseal knows (want %q<step>)", ErrReadme, i+1, line, ReadmeOnErrorContinue)
		}
		switch {
		case name == "":
			return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %q names no step", ErrReadme, i+1, line)
		case strings.TrimSpace(name) != name || strings.ContainsFunc(name, unicode.IsControl):
			return ReadmeDirectives{}, fmt.Errorf("%w: line %d: step name %q has surrounding space or control characters", ErrReadme, i+1, name)
		case seen[name]:
			return ReadmeDirectives{}, fmt.Errorf("%w: line %d: step %q is named twice", ErrReadme, i+1, name)
		}
		seen[name] = true
		d.OnErrorContinue = append(d.OnErrorContinue, name)
	}
	sort.Strings(d.OnErrorContinue)
	return d, nil
}

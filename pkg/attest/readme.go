package attest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
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
	// ReadmeSkippable starts a line declaring that one pipeline task may
	// be skipped, and how: a SkipRule as one line of JSON.
	// `stepseal.dev/skippable: {"task":"deploy","steps":["deploy.push"],…}`.
	ReadmeSkippable = ReadmeDirectivePrefix + "skippable: "
)

// SkipRule is what a layout says of a pipeline task that may be skipped:
// which steps a skip record stands in for, which keys may sign one, and
// the conditions under which Tekton skips the task. The verifier accepts
// the task's missing links only with a skip record, from one of Keys, for
// each of Steps, whose reason one of these conditions allows.
type SkipRule struct {
	// Task is the pipeline task.
	Task string `json:"task"`
	// Steps are its layout steps, in order.
	Steps []string `json:"steps"`
	// Keys are the key IDs (in-toto's) that may sign its skip records:
	// the orchestrator's. Each is among each step's pubkeys, so that
	// in-toto-golang accepts a skip record as the step's link.
	Keys []string `json:"keys"`
	// SkipOnlyKeys are the Keys that are among the steps' pubkeys only
	// to sign skip records: a link of a run signed by one is refused.
	SkipOnlyKeys []string `json:"skipOnlyKeys,omitempty"`
	// When are the task's when expressions as the Pipeline writes them
	// (Input, Operator, Values; or CEL): a skip for "When Expressions
	// evaluated to false" must record exactly these.
	When []run.When `json:"when,omitempty"`
	// Parents are the tasks whose skip cascades to this one as "Parent
	// Tasks were skipped" (a dependency itself skipped for another reason
	// than its when expressions).
	Parents []string `json:"parents,omitempty"`
	// ResultsFrom are the tasks whose results this one uses: their skip
	// skips it as "Results were missing".
	ResultsFrom []string `json:"resultsFrom,omitempty"`
	// Finally: a finally task (its when expressions may read
	// $(tasks.status), which the verifier derives from the DAG tasks).
	Finally bool `json:"finally,omitempty"`
}

// SkippableLines returns the readme lines declaring rules, one per task in
// the order given, each ending in a newline.
func SkippableLines(rules []SkipRule) (string, error) {
	var b strings.Builder
	for _, r := range rules {
		j, err := json.Marshal(r)
		if err != nil {
			return "", err
		}
		b.WriteString(ReadmeSkippable)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// ErrReadme marks a layout readme whose directives cannot be read
// (reject.ErrMalformed).
var ErrReadme = reject.Sentinel(reject.ErrMalformed, "invalid layout readme directive")

// ReadmeDirectives is what a layout readme tells stepseal's verifier.
type ReadmeDirectives struct {
	// OnErrorContinue are the steps that may fail, sorted.
	OnErrorContinue []string
	// Skippable are the tasks that may be skipped, in readme order.
	Skippable []SkipRule
	// Rotated are the functionary keys rotated out, in readme order.
	Rotated []KeyRotation
	// Revoked are the functionary keys revoked, in readme order.
	Revoked []KeyRevocation
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
	skipped := map[string]string{} // task or step -> the task whose rule names it
	for i, line := range strings.Split(readme, "\n") {
		if !strings.HasPrefix(line, ReadmeDirectivePrefix) {
			continue
		}
		if rest, ok := strings.CutPrefix(line, ReadmeSkippable); ok {
			r, err := parseSkipRule(rest)
			if err != nil {
				return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %s%v", ErrReadme, i+1, ReadmeSkippable, err)
			}
			if err := addSkipRule(&d, r, skipped); err != nil {
				return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %v", ErrReadme, i+1, err)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, ReadmeKeyRotated); ok {
			r, err := parseKeyRotation(rest)
			if err == nil {
				err = addKeyChange(&d, &r, nil)
			}
			if err != nil {
				return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %s%v", ErrReadme, i+1, ReadmeKeyRotated, err)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, ReadmeKeyRevoked); ok {
			r, err := parseKeyRevocation(rest)
			if err == nil {
				err = addKeyChange(&d, nil, &r)
			}
			if err != nil {
				return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %s%v", ErrReadme, i+1, ReadmeKeyRevoked, err)
			}
			continue
		}
		name, ok := strings.CutPrefix(line, ReadmeOnErrorContinue)
		if !ok {
			return ReadmeDirectives{}, fmt.Errorf("%w: line %d: %q is not a directive stepseal knows (want %q<step>, %q<json>, %q<json> or %q<json>)", ErrReadme, i+1, line, ReadmeOnErrorContinue, ReadmeSkippable, ReadmeKeyRotated, ReadmeKeyRevoked)
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

// parseSkipRule decodes one skippable line's JSON strictly.
func parseSkipRule(s string) (SkipRule, error) {
	var r SkipRule
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return SkipRule{}, err
	}
	if dec.More() {
		return SkipRule{}, fmt.Errorf("trailing data after the rule")
	}
	if r.Task == "" || len(r.Steps) == 0 || len(r.Keys) == 0 {
		return SkipRule{}, fmt.Errorf("a rule needs a task, its steps and the keys that sign its skip records")
	}
	for _, k := range r.SkipOnlyKeys {
		if !slices.Contains(r.Keys, k) {
			return SkipRule{}, fmt.Errorf("task %s: skip-only key %.8s is not among its keys", r.Task, k)
		}
	}
	for _, w := range r.When {
		cel := w.CEL != ""
		if cel == (w.Operator != "") || w.ResolvedInput != "" || w.ResolvedValues != nil || w.CELResult != nil {
			return SkipRule{}, fmt.Errorf("task %s: a when expression is either input/operator/values or cel, as the Pipeline writes it", r.Task)
		}
	}
	return r, nil
}

// addSkipRule adds r to d unless its task or a step is already covered.
func addSkipRule(d *ReadmeDirectives, r SkipRule, seen map[string]string) error {
	if t, dup := seen["task "+r.Task]; dup {
		return fmt.Errorf("task %q has two skippable rules (%s)", r.Task, t)
	}
	seen["task "+r.Task] = r.Task
	for _, s := range r.Steps {
		if t, dup := seen["step "+s]; dup {
			return fmt.Errorf("step %q is in the skippable rules of %s and %s", s, t, r.Task)
		}
		seen["step "+s] = r.Task
	}
	d.Skippable = append(d.Skippable, r)
	return nil
}

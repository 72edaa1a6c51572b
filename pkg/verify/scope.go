package verify

import (
	"errors"
	"fmt"
	"slices"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
)

// ErrScope: Options.Steps names neither a step nor a task of the layout. It
// is a caller's mistake (a gate configured for another layout), not a
// verdict: Layout returns it without one.
var ErrScope = errors.New("verify: the scope names no step or task of the layout")

// ScopeSteps expands scope (layout step names "<task>.<step>", or task
// names standing for all their steps) against the layout's step names, in
// layout order. An entry that matches nothing is ErrScope.
func ScopeSteps(layoutSteps, scope []string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range scope {
		found := false
		for _, name := range layoutSteps {
			task, _, err := run.SplitStepName(name)
			if name == s || (err == nil && task == s) {
				want[name], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: %q", ErrScope, s)
		}
	}
	var out []string
	for _, name := range layoutSteps {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// LayoutSteps returns the step names of a layout, in layout order, and
// each step's threshold (distinct links it needs). It does not verify the
// layout's signature: callers use it only to know which links to wait for,
// and verify with Layout afterwards.
func LayoutSteps(layout []byte) ([]string, map[string]int, error) {
	pl, err := parseLayout(layout, "layout")
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(pl.Layout.Steps))
	need := make(map[string]int, len(names))
	for i, s := range pl.Layout.Steps {
		names[i] = s.Name
		need[s.Name] = max(s.Threshold, 1)
	}
	return names, need, nil
}

// StepOfLink returns the layout step a link file name names
// ("<step>.<keyid8>.link"), or "" for a name that is not a link of a run
// (a failed attempt's link is evidence, not part of the run).
func StepOfLink(name string) string {
	if _, _, _, earlier := seal.ParseAttemptLinkName(name); earlier {
		return ""
	}
	step, _, ok := seal.ParseLinkName(name)
	if !ok {
		return ""
	}
	return step
}

// restrict is step 3a: with Options.Steps, only the steps in scope are
// verified. Every later step sees only them: the links of the other steps
// are not read (a gate mid-pipeline verifies what ran before it, and the
// later tasks have no links yet), a MATCH rule naming a step out of scope
// matches nothing (so an artifact that must come from such a step is
// refused, never assumed), and a skippable task is excused only when all
// its steps are in scope. It reports whether verification can go on.
func (v *verification) restrict() bool {
	names := make([]string, len(v.cl.Steps))
	for i, s := range v.cl.Steps {
		names[i] = s.Name
	}
	in, err := ScopeSteps(names, v.opts.Steps)
	if err != nil {
		v.scopeErr = err
		return false
	}
	cl := *v.cl
	cl.Steps, cl.byName = nil, map[string]int{}
	v.outOfScope = map[string]bool{}
	for _, s := range v.cl.Steps {
		if !slices.Contains(in, s.Name) {
			v.outOfScope[s.Name] = true
			continue
		}
		cl.byName[s.Name] = len(cl.Steps)
		cl.Steps = append(cl.Steps, s)
	}
	cl.Skips, cl.skipOf = nil, map[string]*attest.SkipRule{}
	for _, r := range v.cl.Skips {
		inside := true
		for _, s := range r.Steps {
			inside = inside && !v.outOfScope[s]
		}
		if inside {
			cl.Skips = append(cl.Skips, r)
		}
	}
	for i := range cl.Skips {
		for _, s := range cl.Skips[i].Steps {
			cl.skipOf[s] = &cl.Skips[i]
		}
	}
	v.cl = &cl
	v.warn("scope: %d of %d layout step(s) verified (%d not in scope: their links are not read)", len(in), len(names), len(v.outOfScope))
	return true
}

package verify

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
)

// Tekton's skipping reasons a skip record may give (v1.SkippingReason; this
// package does not import Tekton). Any other reason — the PipelineRun was
// stopping, timed out, cancelled — means the run did not complete, and
// excuses nothing.
const (
	skipWhen    = "When Expressions evaluated to false"
	skipParent  = "Parent Tasks were skipped"
	skipResults = "Results were missing"
)

// taskStatusRef is a when input that is exactly a task's execution status,
// which the verifier knows from the links themselves.
var taskStatusRef = regexp.MustCompile(`^\$\(tasks\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.status\)$`)

// isSkip reports whether f is a skip record (well-formed or not).
func (f *linkFile) isSkip() bool {
	return f.Link != nil && (f.Link.Skip != nil || f.Link.SkipErr != "")
}

// checkSkipKeys is step 4a, on each link whose signature verified (step 4
// refused a skip record for a step the layout does not let be skipped): a
// skip record must be well-formed, signed
// by a key that may sign skip records; a link of a run must not be signed
// by a key that may only sign skip records (in-toto-golang accepts both: it
// knows no skip records).
func (v *verification) checkSkipKeys() {
	for _, f := range v.files {
		if !f.Valid {
			continue
		}
		r := v.cl.skipOf[f.Step]
		switch {
		case f.Link.SkipErr != "":
			f.Valid = false
			v.fail(&MalformedError{File: f.Name, Reason: f.Link.SkipErr})
		case f.Link.Skip != nil && !slices.Contains(r.Keys, f.KeyID):
			f.Valid = false
			v.fail(&UnauthorizedError{Step: f.Step, File: f.Name, KeyID: f.KeyID,
				Reason: fmt.Sprintf("a skip record, but the layout lets only key(s) %s sign skip records of task %s", shortList(r.Keys), r.Task)})
		case f.Link.Skip == nil && r != nil && slices.Contains(r.SkipOnlyKeys, f.KeyID):
			f.Valid = false
			v.fail(&UnauthorizedError{Step: f.Step, File: f.Name, KeyID: f.KeyID,
				Reason: fmt.Sprintf("the layout lists this key for the step only to sign skip records of task %s, and this link is not one", r.Task)})
		}
	}
}

// checkSkips is step 5a: which skipped tasks are excused. For each
// skippable task of the layout, in layout order, that has valid skip
// records: the task must have no valid link of a run, every step one skip
// record, all saying the same; and the reason must hold — its when
// expressions are the layout's and evaluate to false on the recorded
// inputs (a $(tasks.<t>.status) input must be what the links show:
// "Succeeded" for a task that ran, "None" for one skipped), or its cascade
// parent is one the layout names and was itself skipped (for "Parent Tasks
// were skipped", for another reason than its when expressions). Excused
// steps need no link of a run (step 5), and their skip record is what the
// artifact rules read.
func (v *verification) checkSkips() {
	v.excused = map[string]*linkFile{}
	v.claimed = map[string]bool{}
	skipped := map[string]string{} // excused task -> its skip reason
	byStep := map[string][]*linkFile{}
	for _, f := range v.files {
		if f.Valid && f.Step != "" {
			byStep[f.Step] = append(byStep[f.Step], f)
		}
	}
	for i := range v.cl.Skips {
		r := &v.cl.Skips[i]
		var recs, runs []*linkFile
		for _, s := range r.Steps {
			for _, f := range byStep[s] {
				if f.isSkip() {
					recs = append(recs, f)
				} else {
					runs = append(runs, f)
				}
			}
		}
		if len(recs) == 0 {
			continue
		}
		for _, s := range r.Steps {
			v.claimed[s] = true
		}
		refuse := func(f *linkFile, format string, args ...any) {
			v.fail(&SkipError{Task: r.Task, Step: f.Step, File: f.Name, KeyID: f.KeyID, Reason: fmt.Sprintf(format, args...)})
		}
		if len(runs) > 0 {
			refuse(recs[0], "the task also has link %s of a run: a task either ran or was skipped", runs[0].Name)
			continue
		}
		first := map[string]*linkFile{}
		ok := true
		for _, f := range recs {
			if first[f.Step] == nil {
				first[f.Step] = f
			}
			if !reflect.DeepEqual(f.Link.Skip, recs[0].Link.Skip) {
				refuse(f, "says %s, but skip record %s of the same task says %s", describeSkip(f.Link.Skip), recs[0].Name, describeSkip(recs[0].Link.Skip))
				ok = false
			}
		}
		for _, s := range r.Steps {
			if first[s] == nil {
				v.fail(&SkipError{Task: r.Task, Step: s, Reason: fmt.Sprintf("no skip record for this step, while %s says the task was skipped", recs[0].Name)})
				ok = false
			}
		}
		if !ok {
			continue
		}
		if why := v.skipHolds(r, recs[0].Link.Skip, skipped); why != "" {
			refuse(recs[0], "%s", why)
			continue
		}
		skipped[r.Task] = recs[0].Link.Skip.Reason
		for s, f := range first {
			v.excused[s] = f
		}
	}
	// A task that ran although Tekton would have skipped it: a skip that
	// cascades (its parent's, or the task whose results it uses) was
	// claimed for a task that in truth ran — a link replaced by a skip
	// record — or the orchestrator did not skip what it should have.
	for i := range v.cl.Skips {
		r := &v.cl.Skips[i]
		var ran *linkFile
		for _, s := range r.Steps {
			for _, f := range byStep[s] {
				if !f.isSkip() && ran == nil {
					ran = f
				}
			}
		}
		if ran == nil {
			continue
		}
		for _, p := range r.ResultsFrom {
			if _, ok := skipped[p]; ok {
				v.fail(&SkipError{Task: r.Task, Step: ran.Step, File: ran.Name, KeyID: ran.KeyID,
					Reason: fmt.Sprintf("the task ran, but task %q, whose results it uses, was skipped: Tekton skips it (%s)", p, skipResults)})
			}
		}
		for _, p := range r.Parents {
			if reason, ok := skipped[p]; ok && reason != skipWhen {
				v.fail(&SkipError{Task: r.Task, Step: ran.Step, File: ran.Name, KeyID: ran.KeyID,
					Reason: fmt.Sprintf("the task ran, but its dependency %q was skipped (%s): Tekton skips it (%s)", p, reason, skipParent)})
			}
		}
	}
}

// skipHolds returns why skip does not excuse rule's task, "" if it does.
// skipped holds the tasks excused so far (earlier in the layout) and their
// reasons.
func (v *verification) skipHolds(r *attest.SkipRule, skip *run.Skip, skipped map[string]string) string {
	switch skip.Reason {
	case skipWhen:
		if len(r.When) == 0 {
			return "recorded as skipped by when expressions, but the task has none"
		}
		if skip.Parent != "" {
			return fmt.Sprintf("a when-expression skip names a parent task (%s)", skip.Parent)
		}
		if len(skip.When) != len(r.When) {
			return fmt.Sprintf("records %d when expression(s), the layout's task has %d", len(skip.When), len(r.When))
		}
		holds := true
		for i, w := range skip.When {
			lw := r.When[i]
			if w.Input != lw.Input || w.Operator != lw.Operator || !slices.Equal(w.Values, lw.Values) || w.CEL != lw.CEL {
				return fmt.Sprintf("when expression %d is recorded as %s, the layout's is %s", i+1, describeWhen(w, false), describeWhen(lw, false))
			}
			t, why := v.evalWhen(w, skipped)
			if why != "" {
				return fmt.Sprintf("when expression %d (%s): %s", i+1, describeWhen(w, false), why)
			}
			holds = holds && t
		}
		if holds {
			return fmt.Sprintf("every when expression holds on the recorded inputs (%s): the task should have run", describeWhens(skip.When))
		}
		return ""
	case skipParent, skipResults:
		list, kind := r.Parents, "a dependency whose skip cascades to it"
		if skip.Reason == skipResults {
			list, kind = r.ResultsFrom, "a task whose results it uses"
		}
		if len(skip.When) > 0 {
			return fmt.Sprintf("a %q skip records when expressions", skip.Reason)
		}
		if !slices.Contains(list, skip.Parent) {
			return fmt.Sprintf("%q names task %q, which the layout does not list as %s (%s)", skip.Reason, skip.Parent, kind, strings.Join(list, ", "))
		}
		reason, ok := skipped[skip.Parent]
		switch {
		case !ok:
			return fmt.Sprintf("%q names task %q, which was not skipped", skip.Reason, skip.Parent)
		case skip.Reason == skipParent && reason == skipWhen:
			return fmt.Sprintf("task %q was skipped by its when expressions, which does not skip the tasks after it", skip.Parent)
		}
		return ""
	}
	return fmt.Sprintf("reason %q does not excuse missing links: the run did not complete", skip.Reason)
}

// evalWhen evaluates one recorded when expression as Tekton does ("in":
// the input is one of the values; "notin": it is none of them; CEL: the
// recorded result), after checking the inputs the links can vouch for.
func (v *verification) evalWhen(w run.When, skipped map[string]string) (bool, string) {
	if w.CEL != "" {
		if w.CELResult == nil {
			return false, "no recorded CEL result"
		}
		return *w.CELResult, ""
	}
	if len(w.ResolvedValues) != len(w.Values) {
		return false, fmt.Sprintf("%d resolved value(s) for %d value(s)", len(w.ResolvedValues), len(w.Values))
	}
	templates := append([]string{w.Input}, w.Values...)
	resolved := append([]string{w.ResolvedInput}, w.ResolvedValues...)
	for i, t := range templates {
		if t == "$(tasks.status)" {
			// The DAG tasks' aggregate, as Tekton computes it for a run
			// that verifies (no task failed): Completed when one was
			// skipped.
			want := "Succeeded"
			for _, r := range v.cl.Skips {
				if _, ok := skipped[r.Task]; ok && !r.Finally {
					want = "Completed"
				}
			}
			if resolved[i] != want {
				return false, fmt.Sprintf("%s is recorded as %q, but the links show %q", t, resolved[i], want)
			}
			continue
		}
		m := taskStatusRef.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		want := "Succeeded"
		if _, ok := skipped[m[1]]; ok {
			want = "None"
		} else if !v.ran(m[1]) {
			return false, fmt.Sprintf("%s: task %q neither ran nor was skipped", t, m[1])
		}
		if resolved[i] != want {
			return false, fmt.Sprintf("%s is recorded as %q, but the links show %q", t, resolved[i], want)
		}
	}
	in := slices.Contains(w.ResolvedValues, w.ResolvedInput)
	switch w.Operator {
	case "in":
		return in, ""
	case "notin":
		return !in, ""
	}
	return false, fmt.Sprintf("operator %q is not in or notin", w.Operator)
}

// ran reports whether task has a valid link of a run for a step.
func (v *verification) ran(task string) bool {
	for _, f := range v.files {
		if f.Valid && !f.isSkip() {
			if t, _, err := run.SplitStepName(f.Step); err == nil && t == task {
				return true
			}
		}
	}
	return false
}

func describeSkip(s *run.Skip) string {
	out := fmt.Sprintf("%q", s.Reason)
	if s.Parent != "" {
		out += " (task " + s.Parent + ")"
	}
	if len(s.When) > 0 {
		out += " (" + describeWhens(s.When) + ")"
	}
	return out
}

func describeWhens(ws []run.When) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = describeWhen(w, true)
	}
	return strings.Join(parts, "; ")
}

// describeWhen prints a when expression as written or, resolved, with its
// recorded inputs.
func describeWhen(w run.When, resolved bool) string {
	if w.CEL != "" {
		if resolved && w.CELResult != nil {
			return fmt.Sprintf("cel %q = %t", w.CEL, *w.CELResult)
		}
		return fmt.Sprintf("cel %q", w.CEL)
	}
	if resolved {
		return fmt.Sprintf("%q %s %q", w.ResolvedInput, w.Operator, w.ResolvedValues)
	}
	return fmt.Sprintf("%q %s %q", w.Input, w.Operator, w.Values)
}

func shortList(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = short(id)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

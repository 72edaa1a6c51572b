package layout

import (
	"fmt"
	"slices"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
)

// ErrLayout marks a layout that cannot be generated or is not valid.
var ErrLayout = reject.Sentinel(reject.ErrMalformed, "invalid layout")

// Options tune generate.FromPipeline.
type Options struct {
	// Expires is when the layout stops being valid. Zero means now plus the
	// Functionaries file's expiry.
	Expires time.Time
	// Readme is the layout's free-text readme; empty gives a generated one.
	Readme string
	// SkipKey is the orchestrator's key, which signs the skip records of
	// the tasks Tekton may skip (see attest.SkipRule). Nil means the
	// Functionaries file's skipSigner; with neither, a skipped task's
	// missing links cannot be excused and the run does not verify.
	SkipKey *in_toto.Key
	// Params are the params the run will get (-p), RunID its ID when it is
	// known: with them the generator can give the commands after Tekton's
	// substitution (Commands).
	Params map[string]string
	RunID  string
	// Commands, when set, are the expected command of each step (by step
	// name) instead of the command the Task writes, unsubstituted: the
	// commands the links will record, as far as they are known before the
	// run. in-toto only warns when a link's command differs.
	Commands map[string][]string
}

// Validate checks a layout with in-toto-golang's own validation (types, key
// IDs, expiry format, rule grammar, unique step names) and what it leaves
// out: every step's keys are in the layout, its threshold can be met, and
// every MATCH rule refers to a step or inspection of the layout.
func Validate(l in_toto.Layout) error {
	items := ruleSets(l)
	// in-toto-golang's rule parser indexes rule[0] unchecked.
	for _, it := range items {
		for _, r := range it.rules {
			if len(r) == 0 {
				return fmt.Errorf("%w: %s: empty artifact rule", ErrLayout, it.name)
			}
		}
	}
	if err := in_toto.ValidateMetablock(in_toto.Metablock{Signed: l, Signatures: []in_toto.Signature{}}); err != nil {
		return fmt.Errorf("%w: %s", ErrLayout, oneLine(err.Error()))
	}
	d, err := attest.ParseReadme(l.Readme)
	if err != nil {
		return fmt.Errorf("%w: readme: %v", ErrLayout, err)
	}
	for _, name := range d.OnErrorContinue {
		if !slices.ContainsFunc(l.Steps, func(s in_toto.Step) bool { return s.Name == name }) {
			return fmt.Errorf("%w: readme: %s%s names a step the layout does not have", ErrLayout, attest.ReadmeOnErrorContinue, name)
		}
	}
	if err := validateSkippable(l, d.Skippable); err != nil {
		return err
	}
	for _, s := range l.Steps {
		if len(s.PubKeys) == 0 && len(s.CertificateConstraints) == 0 {
			return fmt.Errorf("%w: step %s: no functionary key", ErrLayout, s.Name)
		}
		for _, id := range s.PubKeys {
			if _, ok := l.Keys[id]; !ok {
				return fmt.Errorf("%w: step %s: key %.8s is not in the layout's keys", ErrLayout, s.Name, id)
			}
		}
		if s.Threshold < 1 {
			return fmt.Errorf("%w: step %s: threshold %d is less than 1", ErrLayout, s.Name, s.Threshold)
		}
		if len(s.CertificateConstraints) == 0 && s.Threshold > len(s.PubKeys) {
			return fmt.Errorf("%w: step %s: threshold %d exceeds its %d keys", ErrLayout, s.Name, s.Threshold, len(s.PubKeys))
		}
	}
	names := map[string]bool{}
	for _, it := range items {
		names[it.name] = true
	}
	for _, it := range items {
		for _, r := range it.rules {
			d, err := in_toto.UnpackRule(r)
			if err != nil {
				return fmt.Errorf("%w: %s: %s", ErrLayout, it.name, oneLine(err.Error()))
			}
			if d["type"] == "match" && !names[d["dstName"]] {
				return fmt.Errorf("%w: %s: rule %v refers to %q, which is not a step of the layout", ErrLayout, it.name, r, d["dstName"])
			}
		}
	}
	return nil
}

// ruleSet is the name and all artifact rules of a step or inspection.
type ruleSet struct {
	name  string
	rules [][]string
}

func ruleSets(l in_toto.Layout) []ruleSet {
	var out []ruleSet
	for _, s := range l.Steps {
		out = append(out, ruleSet{s.Name, append(append([][]string{}, s.ExpectedMaterials...), s.ExpectedProducts...)})
	}
	for _, s := range l.Inspect {
		out = append(out, ruleSet{s.Name, append(append([][]string{}, s.ExpectedMaterials...), s.ExpectedProducts...)})
	}
	return out
}

// validateSkippable checks the skippable readme lines against the steps:
// each names steps the layout has, whose pubkeys hold every key that may
// sign a skip record, whose threshold the other keys can still meet; a
// parent whose skip cascades must be skippable itself.
func validateSkippable(l in_toto.Layout, rules []attest.SkipRule) error {
	steps := map[string]in_toto.Step{}
	for _, s := range l.Steps {
		steps[s.Name] = s
	}
	tasks := map[string]bool{}
	for _, r := range rules {
		tasks[r.Task] = true
	}
	for _, r := range rules {
		for _, p := range append(append([]string(nil), r.Parents...), r.ResultsFrom...) {
			if !tasks[p] {
				return fmt.Errorf("%w: readme: task %s: its skip may cascade from task %s, which has no skippable rule", ErrLayout, r.Task, p)
			}
		}
		for _, name := range r.Steps {
			s, ok := steps[name]
			if !ok {
				return fmt.Errorf("%w: readme: task %s: skippable step %s is not a step of the layout", ErrLayout, r.Task, name)
			}
			for _, k := range r.Keys {
				if !slices.Contains(s.PubKeys, k) {
					return fmt.Errorf("%w: readme: task %s: key %.8s may sign skip records but is not a key of step %s", ErrLayout, r.Task, k, name)
				}
			}
			others := 0
			for _, k := range s.PubKeys {
				if !slices.Contains(r.SkipOnlyKeys, k) {
					others++
				}
			}
			if len(s.CertificateConstraints) == 0 && s.Threshold > others {
				return fmt.Errorf("%w: step %s: threshold %d exceeds its %d functionary keys (the others only sign skip records)", ErrLayout, name, s.Threshold, others)
			}
		}
	}
	return nil
}

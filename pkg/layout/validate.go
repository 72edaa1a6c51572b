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

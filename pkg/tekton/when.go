package tekton

import (
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/stepseal/stepseal/pkg/run"
)

// When returns a task's when expressions as the Pipeline writes them, in
// the form a layout's skippable rule and a skip record carry them.
func When(written v1.WhenExpressions) []run.When {
	var out []run.When
	for _, w := range written {
		if w.CEL != "" {
			out = append(out, run.When{CEL: w.CEL})
			continue
		}
		out = append(out, run.When{Input: w.Input, Operator: string(w.Operator), Values: append([]string{}, w.Values...)})
	}
	return out
}

// WhenSkip is the run.Skip of a task whose when expressions were false:
// the expressions as written, each with its resolved input and values
// (resolved, in the same order) or its CEL result (cel, keyed by the
// resolved expression, as Tekton's EvaluatedCEL). Nil when resolved does
// not match written or a CEL result is unknown (a cluster's Tekton does
// not record which CEL expression was false): no record can then be
// written.
func WhenSkip(written, resolved v1.WhenExpressions, cel map[string]bool) *run.Skip {
	if len(written) != len(resolved) {
		return nil
	}
	s := &run.Skip{Reason: string(v1.WhenExpressionsSkip), When: When(written)}
	for i := range s.When {
		if w := &s.When[i]; w.CEL != "" {
			b, ok := cel[resolved[i].CEL]
			if !ok {
				return nil
			}
			w.CELResult = &b
		} else {
			w.ResolvedInput, w.ResolvedValues = resolved[i].Input, append([]string{}, resolved[i].Values...)
		}
	}
	return s
}

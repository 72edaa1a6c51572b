package tekton

import (
	"fmt"
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// The catalog's record StepActions (stepaction/stepseal-record-start and
// -stop): on a cluster they measure the user's step between them, and the
// controller signs that step's link from their measurement; they get no
// link of their own.
const (
	RecordStartStepAction = "stepseal-record-start"
	RecordStopStepAction  = "stepseal-record-stop"
)

// isRecorder reports whether st references one of the record StepActions
// by name.
func isRecorder(st v1.Step) bool {
	return st.Ref != nil && st.Ref.Resolver == "" && (st.Ref.Name == RecordStartStepAction || st.Ref.Name == RecordStopStepAction)
}

// dropRecorders removes the record StepActions' steps from every task of s,
// as the controller leaves them out of the run it signs: the layout has no
// step for them, and the local runner, which records every step itself,
// does not run them. It adds a note naming them.
func (s *Spec) dropRecorders() {
	var dropped []string
	for pt, ts := range s.Tasks {
		if ts == nil {
			continue
		}
		var kept []v1.Step
		var names []string
		for _, st := range ts.Steps {
			if isRecorder(st) {
				names = append(names, st.Name)
				continue
			}
			kept = append(kept, st)
		}
		if len(names) == 0 {
			continue
		}
		c := ts.DeepCopy()
		c.Steps = kept
		s.Tasks[pt] = c
		dropped = append(dropped, fmt.Sprintf("%s (%s)", pt, strings.Join(names, ", ")))
	}
	if len(dropped) == 0 {
		return
	}
	sort.Strings(dropped)
	s.Notes = append(s.Notes, fmt.Sprintf("stepseal: the record StepActions of %s have no step of their own in the run or its layout: the step between them is recorded directly here, and by the controller from their measurement on a cluster", strings.Join(dropped, "; ")))
}

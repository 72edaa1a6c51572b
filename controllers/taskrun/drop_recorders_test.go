package taskrun

import (
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/record"
)

// TestDropRecorderSteps: the steps of the record pair (a STEPSEAL_MATERIALS
// or STEPSEAL_PRODUCTS step result) leave the record, the measured step
// stays, without any measurement read; a TaskRun without recorders is
// unchanged.
func TestDropRecorderSteps(t *testing.T) {
	recorded := controllertest.Minimal(func(tr *v1.TaskRun) {
		s := tr.Status.Steps[0]
		start, stop := s, s
		start.Name, stop.Name = "s-materials", "s-products"
		start.Results = []v1.TaskRunStepResult{{Name: record.ResultMaterials, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("00")}}
		stop.Results = []v1.TaskRunStepResult{{Name: record.ResultProducts, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("11")}}
		start.ContainerState = corev1.ContainerState{Terminated: s.Terminated.DeepCopy()}
		stop.ContainerState = corev1.ContainerState{Terminated: s.Terminated.DeepCopy()}
		tr.Status.Steps = []v1.StepState{start, s, stop}
		ts := tr.Status.TaskSpec
		ts.Steps = []v1.Step{{Name: "s-materials", Image: "stepseal"}, ts.Steps[0], {Name: "s-products", Image: "stepseal"}}
	})
	for _, c := range []struct {
		name string
		tr   *v1.TaskRun
	}{{"recorded", recorded}, {"plain", controllertest.Minimal(nil)}} {
		built, err := FromTaskRun(c.tr)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n := len(built.Record.Tasks[0].Steps); c.name == "recorded" && n != 3 {
			t.Fatalf("%s: FromTaskRun gave %d steps, want the recorders too", c.name, n)
		}
		DropRecorderSteps(c.tr, built)
		var names []string
		for _, s := range built.Record.Tasks[0].Steps {
			names = append(names, s.Name)
		}
		if len(names) != 1 || !strings.HasSuffix(names[0], "s") || strings.Contains(names[0], "-") {
			t.Errorf("%s: steps after dropping the recorders: %v, want the measured step only", c.name, names)
		}
	}
}

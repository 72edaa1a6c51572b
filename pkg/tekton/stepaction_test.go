package tekton

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

const stepActionV1beta1 = `apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata: {name: greet}
spec:
  image: busybox
  params:
  - {name: who}
  - {name: greeting, default: hello}
  results:
  - {name: line}
  command: [echo]
  args: ["$(params.greeting)", "$(params.who)"]
`

var stepActionV1alpha1 = strings.Replace(stepActionV1beta1, "tekton.dev/v1beta1", "tekton.dev/v1alpha1", 1)

const stepActionRun = `apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: tr}
spec:
  params: [{name: who, value: run}]
  taskSpec:
    params: [{name: who}]
    steps:
    - name: s
      ref: {name: greet}
      params: [{name: who, value: $(params.who)}]
`

// StepActions of either version, in the run file or beside it, resolve into
// the step as Tekton's reconciler does: command, args with the step's param
// and the StepAction's default, results.
func TestStepActionResolve(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
	}{
		{"v1beta1 in the run file", map[string]string{"run.yaml": stepActionV1beta1 + "---\n" + stepActionRun}},
		{"v1alpha1 in the run file", map[string]string{"run.yaml": stepActionV1alpha1 + "---\n" + stepActionRun}},
		{"v1beta1 beside the run file", map[string]string{"run.yaml": stepActionRun, "actions.yaml": stepActionV1beta1}},
		{"v1alpha1 in --tasks", map[string]string{"run.yaml": stepActionRun, "tasks/actions.yaml": stepActionV1alpha1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := files(t, c.files)
			tasks := ""
			if _, ok := c.files["tasks/actions.yaml"]; ok {
				tasks = filepath.Join(dir, "tasks")
			}
			s, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), tasks)
			if err != nil {
				t.Fatal(err)
			}
			if s.StepActions["greet"] == nil {
				t.Fatalf("StepAction not loaded: %v", s.StepActions)
			}
			tr := &v1.TaskRun{Spec: v1.TaskRunSpec{Params: v1.Params{{Name: "who", Value: *v1.NewStructuredValues("tekton")}}}}
			steps, err := s.ResolveSteps(t.Context(), "tr", s.Tasks["tr"], tr)
			if err != nil {
				t.Fatal(err)
			}
			st := steps[0]
			if st.Ref != nil || st.Image != "busybox" || strings.Join(st.Command, " ") != "echo" || strings.Join(st.Args, " ") != "hello tekton" || len(st.Results) != 1 {
				t.Errorf("resolved step = %+v", st)
			}
			var found bool
			for _, f := range s.Files {
				found = found || strings.HasSuffix(f, "actions.yaml")
			}
			if _, beside := c.files["actions.yaml"]; beside && !found {
				t.Errorf("the StepAction's file is not among the run's files: %v", s.Files)
			}
		})
	}
}

// A StepAction param the step does not provide and that has no default is
// Tekton's error, naming the task.
func TestStepActionMissingParam(t *testing.T) {
	run := strings.Replace(stepActionRun, "      params: [{name: who, value: $(params.who)}]\n", "", 1)
	dir := files(t, map[string]string{"run.yaml": stepActionV1beta1 + "---\n" + run})
	s, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ResolveSteps(t.Context(), "tr", s.Tasks["tr"], nil)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `pipeline task "tr"`) || !strings.Contains(err.Error(), "who") {
		t.Fatalf("err = %v", err)
	}
}

package localrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
)

// Steps referencing StepActions (v1beta1 and v1alpha1) run as Tekton's
// reconciler resolves them: the step's params and the StepAction's
// defaults substituted, the stepTemplate merged, step results written to
// $(step.results.<r>.path) and read by later steps, a task result taken
// from a step result.
func TestStepActions(t *testing.T) {
	tr := newTestRun(t)
	tr.opts.Params = map[string]string{"who": "tekton"}
	rec, err := Run(context.Background(), load(t, "testdata/stepactions.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "shared", "greeting.txt"))
	if err != nil || string(b) != "hello, tekton (template)\n" {
		t.Errorf("greeting.txt = %q, %v; want the StepAction's default, the step's param and the stepTemplate's env", b, err)
	}
	if got := rec.Results["loud"]; got != "HELLO, TEKTON!" {
		t.Errorf("pipeline result loud = %q, want the task result taken from the step result", got)
	}
	shout := findStep(t, rec, "greet.shout")
	if len(shout.Command) != 2 || shout.Command[0] != "sh" {
		t.Errorf("greet.shout command = %q, want the StepAction's", shout.Command)
	}
	if len(shout.Args) != 2 || shout.Args[1] != "hello, tekton" || !strings.Contains(shout.Args[0], "/tekton/steps/step-shout/results/loud") {
		t.Errorf("greet.shout args = %q, want the step result substituted and Pod paths recorded", shout.Args)
	}
	write := findStep(t, rec, "greet.write")
	if write.Env["WHO"] != "tekton" || write.Env["FROM_TEMPLATE"] != "template" {
		t.Errorf("greet.write env = %v", write.Env)
	}
	if !strings.Contains(write.Script, "/tekton/steps/step-write/results/line") {
		t.Errorf("greet.write script does not record the Pod path of its step result:\n%s", write.Script)
	}
}

// A step that reads a step result the earlier step did not write fails
// the task with ErrResult naming the task, the step and the reference,
// before it runs (as Tekton's entrypoint fails it).
func TestStepResultNotWritten(t *testing.T) {
	const p = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: unwritten}
spec:
  tasks:
  - name: t
    taskSpec:
      steps:
      - name: first
        image: busybox
        results: [{name: r}]
        script: 'true'
      - name: second
        image: busybox
        command: [echo]
        args: ["$(steps.first.results.r)"]
`
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, file, ""), tr.opts)
	if !errors.Is(err, ErrResult) {
		t.Fatalf("err = %v, want ErrResult", err)
	}
	for _, w := range []string{"pipeline task t step second", "$(steps.first.results.r)", "not written"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
	if steps := rec.AllSteps(); len(steps) != 1 || steps[0].Name != "t.first" {
		t.Errorf("steps = %+v, want only t.first", steps)
	}
}

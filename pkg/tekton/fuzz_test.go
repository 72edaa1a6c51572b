package tekton

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: whatever a run file holds, Load returns a Spec or an error,
// never panics.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(task + "---\n" + pipeline + "---\n" + pipelineRunRef))
	f.Add([]byte(cmRun))
	f.Add([]byte("apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: t}\nspec: {taskSpec: {steps: [{name: s, image: x, script: 'true'}]}}\n"))
	f.Add([]byte("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s}\n"))
	f.Add([]byte(stepActionV1beta1 + "---\n" + stepActionRun))
	f.Add([]byte(stepActionV1alpha1 + "---\n" + stepActionRun))
	for _, p := range []string{"../../test/e2e/testdata/runs/pipelinerun-stepactions.yaml", "../localrun/testdata/stepactions.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "run.yaml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(t.Context(), p, "")
		if err == nil && s.Pipeline == nil {
			t.Fatal("no error and no Pipeline")
		}
		if err != nil {
			return
		}
		// Tekton's StepAction resolution over what loaded: a result or
		// an error, never a panic.
		for name, ts := range s.Tasks {
			_, _ = s.ResolveSteps(t.Context(), name, ts, nil)
		}
	})
}

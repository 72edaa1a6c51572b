package generate

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/reject"
)

// A matrix fan-out runs one TaskRun per combination, each signing links of
// the same <pipelineTask>.<step> names: the layout cannot say which
// combination a step verified, so generation refuses the Pipeline naming
// the task (a DAG or a finally task, params or include), never silently
// one step for N TaskRuns.
func TestMatrixRefused(t *testing.T) {
	dir := t.TempDir()
	functionaries := filepath.Join(dir, "functionaries.yaml")
	if err := os.WriteFile(functionaries, []byte("apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nmetadata: {name: fan}\n"+
		"spec:\n  functionaries: [{name: ci}]\n  steps: [{match: \"*\", functionaries: [ci]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, pipeline := range map[string]string{
		"params":  "  tasks:\n  - name: build\n    matrix: {params: [{name: arch, value: [amd64, arm64]}]}\n" + fanTask,
		"include": "  tasks:\n  - name: build\n    matrix: {include: [{name: one, params: [{name: arch, value: amd64}]}]}\n" + fanTask,
		"finally": "  tasks:\n  - name: first\n    taskSpec: {steps: [{name: s, image: busybox, script: 'true'}]}\n" +
			"  finally:\n  - name: build\n    matrix: {params: [{name: arch, value: [amd64, arm64]}]}\n" + fanTask,
	} {
		p := filepath.Join(t.TempDir(), "pipeline.yaml")
		if err := os.WriteFile(p, []byte("apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: fan}\nspec:\n"+pipeline), 0o644); err != nil {
			t.Fatal(err)
		}
		spec, f := loadPipeline(t, p, functionaries)
		_, err := FromPipeline(spec, f, testKeys(t, f), layout.Options{Expires: testExpiry})
		want := p + `: pipeline task "build": matrix fan-out is not supported: Tekton runs one TaskRun per combination and each signs links named build.<step>, ` +
			"so one layout step could not say which combination it verified; write one pipeline task per combination"
		if !errors.Is(err, ErrMatrix) || !errors.Is(err, reject.ErrUnsupported) || err.Error() != want {
			t.Errorf("%s: %v, want ErrMatrix: %s", name, err, want)
		}
	}
}

const fanTask = `    taskSpec:
      params: [{name: arch}]
      steps: [{name: compile, image: busybox, script: 'echo $(params.arch)'}]
`

package generate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A ConfigMap workspace starts with the run file's files: its first step
// ALLOWs exactly those names and must leave them as they were; the next
// step treats it as any read-only workspace.
func TestConfigMapWorkspaceRules(t *testing.T) {
	l, _ := generate(t, "../../../test/e2e/testdata/runs/pipelinerun-configmap.yaml", "../../../test/e2e/testdata/runs/functionaries.yaml")
	if len(l.Steps) != 2 {
		t.Fatalf("steps = %d", len(l.Steps))
	}
	read, stamp := l.Steps[0], l.Steps[1]
	want := [][]string{{"ALLOW", "settings/app.properties"}, {"ALLOW", "settings/docs/NOTES.md"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, read.ExpectedMaterials); d != "" {
		t.Errorf("package.read materials (-want +got):\n%s", d)
	}
	want = [][]string{{"ALLOW", "dist/**"}, {"MATCH", "settings/**", "WITH", "MATERIALS", "FROM", "package.read"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, read.ExpectedProducts); d != "" {
		t.Errorf("package.read products (-want +got):\n%s", d)
	}
	want = [][]string{{"MATCH", "dist/**", "WITH", "PRODUCTS", "FROM", "package.read"}, {"MATCH", "settings/**", "WITH", "PRODUCTS", "FROM", "package.stamp"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, stamp.ExpectedMaterials); d != "" {
		t.Errorf("package.stamp materials (-want +got):\n%s", d)
	}
}

// A TaskRun's layout steps are <taskRun>.<step>.
func TestTaskRunStepNames(t *testing.T) {
	l, _ := generate(t, "../../../test/e2e/testdata/runs/taskrun-secret.yaml", "../../../test/e2e/testdata/runs/functionaries.yaml")
	if len(l.Steps) != 1 || l.Steps[0].Name != "secret-run.check" {
		t.Fatalf("steps = %+v", l.Steps)
	}
	want := [][]string{{"ALLOW", "credentials/token"}, {"ALLOW", "credentials/user"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, l.Steps[0].ExpectedMaterials); d != "" {
		t.Errorf("materials (-want +got):\n%s", d)
	}
}

// Steps that reference StepActions are the StepActions' steps in the
// layout: the command and script come from the StepAction, so the layout
// and the local runner's links agree.
func TestStepActionSteps(t *testing.T) {
	l, _ := generate(t, "../../../test/e2e/testdata/runs/pipelinerun-stepactions.yaml", "../../../test/e2e/testdata/runs/functionaries.yaml")
	var names []string
	for _, s := range l.Steps {
		names = append(names, s.Name)
	}
	if d := cmp.Diff([]string{"produce.write", "produce.hash", "produce.record", "check.verify"}, names); d != "" {
		t.Fatalf("steps (-want +got):\n%s", d)
	}
	if got := l.Steps[0].ExpectedCommand; len(got) != 5 || got[0] != "sh" || got[1] != "-c" {
		t.Errorf("produce.write expected command = %q, want the v1alpha1 StepAction's command and args", got)
	}
	if got := l.Steps[1].ExpectedCommand; len(got) != 3 || got[0] != "/bin/sh" || !strings.Contains(got[2], "sum") {
		t.Errorf("produce.hash expected command = %q, want the v1beta1 StepAction's script", got)
	}
}

// A task with retries starts over in what its failed attempt left: its
// first step ALLOWs the workspace after the MATCH; its later steps and
// tasks without retries keep the strict rules.
func TestRetriedTaskRules(t *testing.T) {
	l, _ := generate(t, "../../../test/e2e/testdata/runs/pipelinerun-retries.yaml", "../../../test/e2e/testdata/runs/functionaries.yaml")
	if len(l.Steps) != 2 {
		t.Fatalf("steps = %+v", l.Steps)
	}
	want := [][]string{{"DISALLOW", "*"}}
	if d := cmp.Diff(want, l.Steps[0].ExpectedMaterials); d != "" {
		t.Errorf("fetch.checkout materials (-want +got):\n%s", d)
	}
	want = [][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "fetch.checkout"}, {"ALLOW", "source/**"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, l.Steps[1].ExpectedMaterials); d != "" {
		t.Errorf("build.compile materials (-want +got):\n%s", d)
	}
}

// What the controller's links record beyond workspaces gets a rule on the
// step that carries it: declared task results on the last step, declared
// step results on their step, and, only on steps that may carry outputs or
// inputs named at run time (type hints, artifacts), ALLOW * after DISALLOW
// of every name the layout knows.
func TestRecordedRules(t *testing.T) {
	l, _ := generate(t, "testdata/results.yaml", "../../../test/e2e/testdata/runs/functionaries.yaml")
	closed := [][]string{{"DISALLOW", "src/**"}, {"DISALLOW", "results/*"}, {"DISALLOW", "steps/*"}, {"ALLOW", "*"}, {"DISALLOW", "*"}}
	want := map[string][2][][]string{
		// Step artifacts: materials and products named at run time.
		"build.compile": {closed, closed},
		"build.push": {{{"MATCH", "src/**", "WITH", "PRODUCTS", "FROM", "build.push"}, {"DISALLOW", "*"}},
			append([][]string{{"MATCH", "src/**", "WITH", "PRODUCTS", "FROM", "build.compile"},
				{"CREATE", "results/IMAGE_DIGEST"}, {"CREATE", "results/IMAGE_URL"}, {"CREATE", "results/version"},
				{"CREATE", "steps/push/results/log"}}, closed...)},
		// An IMAGES step result; the task's $(artifacts.path) inputs are
		// recorded on its first step, its outputs on its last.
		"scan.check":     {closed, append([][]string{{"CREATE", "steps/check/results/IMAGES"}}, closed...)},
		"scan.unnamed-1": {{{"DISALLOW", "*"}}, closed},
	}
	if len(l.Steps) != len(want) {
		t.Fatalf("steps = %d, want %d", len(l.Steps), len(want))
	}
	for _, s := range l.Steps {
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected step %s", s.Name)
			continue
		}
		if d := cmp.Diff(w[0], s.ExpectedMaterials); d != "" {
			t.Errorf("%s materials (-want +got):\n%s", s.Name, d)
		}
		if d := cmp.Diff(w[1], s.ExpectedProducts); d != "" {
			t.Errorf("%s products (-want +got):\n%s", s.Name, d)
		}
	}
}

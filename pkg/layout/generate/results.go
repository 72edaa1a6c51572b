package generate

import (
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/stepseal/stepseal/pkg/run"
)

// What a cluster-signed link records beyond workspace files, and where
// (controllers/taskrun FromTaskRun):
//
//   - a TaskRun result r: product run.TaskResultName(r) ("results/<r>") of
//     the last step that ran;
//   - a step result r of step s: product run.StepResultName(s, r)
//     ("steps/<s>/results/<r>") of s;
//   - outputs a type-hinted result names (*IMAGE_URL + *IMAGE_DIGEST,
//     IMAGES, *ARTIFACT_URI + *ARTIFACT_DIGEST, *ARTIFACT_OUTPUTS): products,
//     named by the image repository or artifact URI, of the last step for a
//     task result and of the step for a step result; *ARTIFACT_INPUTS:
//     materials of the first step (task result) or of the step;
//   - step artifacts (a step writing $(step.artifacts.path)): that step's
//     materials and products by URI; task artifacts ($(artifacts.path)):
//     materials of the first step and products of the last.
//
// The rules name results exactly as the Task declares them: a result the
// Task does not declare is still refused by DISALLOW *. Outputs and inputs
// named at run time (an image's repository is a result's value) cannot be
// named in the layout: only a step the Task lets carry them gets a rule for
// them, and that rule comes after the step's own rules and after DISALLOW
// rules closing every name the layout does know (each pipeline workspace,
// results/*, steps/*), so it can never admit a workspace file or an
// undeclared result.
type recorded struct {
	// taskResults are the Task's declared results, sorted.
	taskResults []string
	// stepResults[i] are step i's declared results (the StepAction's for a
	// step that references one), sorted; status[i] is the name Tekton
	// gives step i in the TaskRun's status.
	stepResults [][]string
	status      []string
	// outputs[i] / inputs[i]: step i may carry products / materials named
	// at run time.
	outputs, inputs []bool
}

// Tekton's variables for the files a step writes its artifacts to.
const (
	stepArtifactsVar = "$(step.artifacts.path)"
	taskArtifactsVar = "$(artifacts.path)"
)

// recordedOf computes what the controller's links of a task's steps may
// record, from its TaskSpec and its steps after StepAction resolution and
// stepTemplate merge. status are the steps' names as Tekton writes them
// ("unnamed-<i>" for a step without a name).
func recordedOf(ts *v1.TaskSpec, steps []v1.Step, status []string) recorded {
	n := len(steps)
	r := recorded{stepResults: make([][]string, n), status: status, outputs: make([]bool, n), inputs: make([]bool, n)}
	if n == 0 {
		return r
	}
	for _, res := range ts.Results {
		r.taskResults = append(r.taskResults, res.Name)
		if run.HintsOutput(res.Name) {
			r.outputs[n-1] = true
		}
		if run.HintsInput(res.Name) {
			r.inputs[0] = true
		}
	}
	sort.Strings(r.taskResults)
	for i, s := range steps {
		for _, res := range s.Results {
			r.stepResults[i] = append(r.stepResults[i], res.Name)
			if run.HintsOutput(res.Name) {
				r.outputs[i] = true
			}
			if run.HintsInput(res.Name) {
				r.inputs[i] = true
			}
		}
		sort.Strings(r.stepResults[i])
		if references(s, stepArtifactsVar) {
			r.outputs[i], r.inputs[i] = true, true
		}
		if references(s, taskArtifactsVar) {
			r.inputs[0], r.outputs[n-1] = true, true
		}
	}
	return r
}

// references reports whether a step's script, command, args or env values
// use variable v (as Tekton's pod builder decides whether a step writes
// artifacts).
func references(s v1.Step, v string) bool {
	if strings.Contains(s.Script, v) {
		return true
	}
	for _, x := range append(append([]string{}, s.Command...), s.Args...) {
		if strings.Contains(x, v) {
			return true
		}
	}
	for _, e := range s.Env {
		if strings.Contains(e.Value, v) {
			return true
		}
	}
	return false
}

// recordedRules are the rules for what step i of t records beyond
// workspaces, to go after its workspace rules and before DISALLOW *.
func (g *graph) recordedRules(t *task, i int) (materials, products [][]string) {
	rec := t.recorded
	if i == len(t.steps)-1 {
		for _, r := range rec.taskResults {
			products = append(products, []string{"CREATE", run.TaskResultName(r)})
		}
	}
	for _, r := range rec.stepResults[i] {
		products = append(products, []string{"CREATE", run.StepResultName(rec.status[i], r)})
	}
	if rec.inputs[i] {
		materials = append(materials, g.closeKnown()...)
		materials = append(materials, []string{"ALLOW", "*"})
	}
	if rec.outputs[i] {
		products = append(products, g.closeKnown()...)
		products = append(products, []string{"ALLOW", "*"})
	}
	return materials, products
}

// closeKnown refuses what is left of every name the layout knows, before a
// rule for names known only at run time.
func (g *graph) closeKnown() [][]string {
	ws := make([]string, 0, len(g.workspaces))
	for w := range g.workspaces {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	var rules [][]string
	for _, w := range ws {
		rules = append(rules, []string{"DISALLOW", w + "/**"})
	}
	return append(rules, []string{"DISALLOW", run.TaskResultPrefix + "*"}, []string{"DISALLOW", run.StepResultPrefix + "*"})
}

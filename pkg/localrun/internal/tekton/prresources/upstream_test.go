package resources_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	upstream "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	uptr "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/yaml"

	ours "github.com/stepseal/stepseal/pkg/localrun/internal/tekton/prresources"
	ourtr "github.com/stepseal/stepseal/pkg/localrun/internal/tekton/trresources"
)

// The copy is only worth having if it substitutes and resolves exactly as
// Tekton does: the sequence of calls the local runner makes (localrun.go
// resolve, runner.go runPipelineTask and pipelineResults) is run on the same
// input through the copy and through Tekton's own package, and every
// intermediate result must be equal.

const pipelineYAML = `
params:
- name: s
  default: "plain"
- name: arr
  type: array
  default: ["a", "b"]
- name: obj
  type: object
  properties: {k: {}, l: {}}
  default: {k: "kv", l: "lv"}
- name: ref
  default: "$(params.s)-nested"
- name: required
workspaces:
- name: shared
tasks:
- name: first
  taskRef: {name: t}
  params:
  - {name: a, value: "$(params.s) $(params.obj.k) $(params.arr[1]) $(context.pipelineRun.name) $(context.pipeline.name)"}
  - {name: list, value: ["$(params.arr[*])", "$(params.required)"]}
  - {name: o, value: "$(params.obj[*])"}
  workspaces:
  - {name: w, workspace: shared, subPath: "$(params.s)"}
- name: second
  taskRef: {name: t}
  params:
  - {name: a, value: "$(tasks.first.results.out) $(tasks.first.results.list[1]) $(tasks.first.results.obj.k) $(params.ref)"}
  - {name: list, value: ["$(tasks.first.results.list[*])"]}
  when:
  - {input: "$(tasks.first.results.out)", operator: in, values: ["$(params.s)-out", "$(params.required)"]}
results:
- name: joined
  value: "$(tasks.first.results.out)/$(tasks.second.results.out)"
- name: list
  type: array
  value: "$(tasks.first.results.list[*])"
- name: obj
  type: object
  value: "$(tasks.first.results.obj[*])"
finally:
- name: last
  taskRef: {name: t}
  params:
  - {name: a, value: "$(tasks.second.status) $(tasks.status) $(params.s)"}
`

func pipelineSpec(t testing.TB) *v1.PipelineSpec {
	t.Helper()
	var ps v1.PipelineSpec
	if err := yaml.Unmarshal([]byte(pipelineYAML), &ps); err != nil {
		t.Fatal(err)
	}
	ps.SetDefaults(context.Background()) // as tekton.Load does
	return &ps
}

func pipelineRun(params v1.Params) *v1.PipelineRun {
	return &v1.PipelineRun{Spec: v1.PipelineRunSpec{
		Params:     params,
		Workspaces: []v1.WorkspaceBinding{{Name: "shared", EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}}
}

func goodParams(s, item, required string) v1.Params {
	return v1.Params{
		{Name: "s", Value: *v1.NewStructuredValues(s)},
		{Name: "arr", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{item, s}}},
		{Name: "obj", Value: *v1.NewObject(map[string]string{"k": item, "l": s})},
		{Name: "required", Value: *v1.NewStructuredValues(required)},
	}
}

// taskRunOf is a finished TaskRun with results, as the runner builds it.
func taskRunOf(name, out string, list []string, obj map[string]string) *v1.TaskRun {
	tr := &v1.TaskRun{}
	tr.Name = "run-" + name
	tr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: "True", Reason: v1.TaskRunReasonSuccessful.String()}}
	tr.Status.Results = []v1.TaskRunResult{
		{Name: "out", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(out)},
		{Name: "list", Type: v1.ResultsTypeArray, Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: list}},
		{Name: "obj", Type: v1.ResultsTypeObject, Value: *v1.NewObject(obj)},
	}
	return tr
}

// trace records what one implementation returned at each call.
type trace struct {
	ValidateErrs []string
	Spec         *v1.PipelineSpec
	Tasks        []v1.PipelineTask
	ResolveErrs  []string
	TaskResults  map[string][]v1.TaskRunResult
	Results      []v1.PipelineRunResult
	ResultsErr   string
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func runUpstream(ps *v1.PipelineSpec, pr *v1.PipelineRun, runs map[string]*v1.TaskRun) trace {
	var tr trace
	ps, pr = ps.DeepCopy(), pr.DeepCopy()
	pr.Name = "pr"
	tr.ValidateErrs = []string{
		errString(upstream.ValidateRequiredParametersProvided(&ps.Params, &pr.Spec.Params)),
		errString(upstream.ValidateParamTypesMatching(ps, pr)),
		errString(upstream.ValidateObjectParamRequiredKeys(ps.Params, pr.Spec.Params)),
		errString(upstream.ValidateParamArrayIndex(ps, pr.Spec.Params)),
		errString(upstream.ValidateWorkspaceBindings(ps, pr)),
	}
	ps, err := upstream.ApplyParameters(ps, pr)
	if err != nil {
		tr.ValidateErrs = append(tr.ValidateErrs, err.Error())
		return tr
	}
	ps = upstream.ApplyContexts(ps, "p", pr)
	ps = upstream.ApplyWorkspaces(ps, pr)
	tr.Spec = ps
	var state upstream.PipelineRunState
	for i := range ps.Tasks {
		rpt := &upstream.ResolvedPipelineTask{PipelineTask: &ps.Tasks[i]}
		refs, _, err := upstream.ResolveResultRefs(state, upstream.PipelineRunState{rpt})
		tr.ResolveErrs = append(tr.ResolveErrs, errString(err))
		upstream.ApplyTaskResults(upstream.PipelineRunState{rpt}, refs)
		rpt.ResolvedTask = &uptr.ResolvedTask{TaskSpec: &v1.TaskSpec{Results: []v1.TaskResult{{Name: "out", Value: v1.NewStructuredValues("$(tasks." + ps.Tasks[0].Name + ".results.out)")}}}}
		upstream.PropagateResults(rpt, state)
		tr.Tasks = append(tr.Tasks, *rpt.PipelineTask)
		if run := runs[ps.Tasks[i].Name]; run != nil {
			rpt.TaskRunNames = []string{run.Name}
			rpt.TaskRuns = []*v1.TaskRun{run.DeepCopy()}
		}
		state = append(state, rpt)
	}
	tr.TaskResults = state.GetTaskRunsResults()
	status := map[string]string{}
	for _, t := range ps.Tasks {
		s := v1.TaskRunReasonSuccessful.String()
		if runs[t.Name] == nil {
			s = upstream.PipelineTaskStateNone
		}
		status[upstream.PipelineTaskStatusPrefix+t.Name+upstream.PipelineTaskStatusSuffix] = s
	}
	tr.Results, err = upstream.ApplyTaskResultsToPipelineResults(ps.Results, tr.TaskResults, nil, status)
	tr.ResultsErr = errString(err)
	return tr
}

// runOurs is runUpstream with the copy (the types differ, so the code is
// repeated rather than shared).
func runOurs(ps *v1.PipelineSpec, pr *v1.PipelineRun, runs map[string]*v1.TaskRun) trace {
	var tr trace
	ps, pr = ps.DeepCopy(), pr.DeepCopy()
	pr.Name = "pr"
	tr.ValidateErrs = []string{
		errString(ours.ValidateRequiredParametersProvided(&ps.Params, &pr.Spec.Params)),
		errString(ours.ValidateParamTypesMatching(ps, pr)),
		errString(ours.ValidateObjectParamRequiredKeys(ps.Params, pr.Spec.Params)),
		errString(ours.ValidateParamArrayIndex(ps, pr.Spec.Params)),
		errString(ours.ValidateWorkspaceBindings(ps, pr)),
	}
	ps, err := ours.ApplyParameters(ps, pr)
	if err != nil {
		tr.ValidateErrs = append(tr.ValidateErrs, err.Error())
		return tr
	}
	ps = ours.ApplyContexts(ps, "p", pr)
	ps = ours.ApplyWorkspaces(ps, pr)
	tr.Spec = ps
	var state ours.PipelineRunState
	for i := range ps.Tasks {
		rpt := &ours.ResolvedPipelineTask{PipelineTask: &ps.Tasks[i]}
		refs, _, err := ours.ResolveResultRefs(state, ours.PipelineRunState{rpt})
		tr.ResolveErrs = append(tr.ResolveErrs, errString(err))
		ours.ApplyTaskResults(ours.PipelineRunState{rpt}, refs)
		rpt.ResolvedTask = &ourtr.ResolvedTask{TaskSpec: &v1.TaskSpec{Results: []v1.TaskResult{{Name: "out", Value: v1.NewStructuredValues("$(tasks." + ps.Tasks[0].Name + ".results.out)")}}}}
		ours.PropagateResults(rpt, state)
		tr.Tasks = append(tr.Tasks, *rpt.PipelineTask)
		if run := runs[ps.Tasks[i].Name]; run != nil {
			rpt.TaskRunNames = []string{run.Name}
			rpt.TaskRuns = []*v1.TaskRun{run.DeepCopy()}
		}
		state = append(state, rpt)
	}
	tr.TaskResults = state.GetTaskRunsResults()
	status := map[string]string{}
	for _, t := range ps.Tasks {
		s := v1.TaskRunReasonSuccessful.String()
		if runs[t.Name] == nil {
			s = ours.PipelineTaskStateNone
		}
		status[ours.PipelineTaskStatusPrefix+t.Name+ours.PipelineTaskStatusSuffix] = s
	}
	tr.Results, err = ours.ApplyTaskResultsToPipelineResults(ps.Results, tr.TaskResults, nil, status)
	tr.ResultsErr = errString(err)
	return tr
}

func compare(t *testing.T, ps *v1.PipelineSpec, pr *v1.PipelineRun, runs map[string]*v1.TaskRun) trace {
	t.Helper()
	want := runUpstream(ps, pr, runs)
	got := runOurs(ps, pr, runs)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("copy differs from Tekton (-tekton +copy):\n%s", d)
	}
	return got
}

func TestSameAsUpstream(t *testing.T) {
	runs := map[string]*v1.TaskRun{
		"first":  taskRunOf("first", "plain-out", []string{"l0", "l1"}, map[string]string{"k": "ok"}),
		"second": taskRunOf("second", "second-out", []string{"m"}, map[string]string{"k": "x"}),
	}
	for _, tc := range []struct {
		name   string
		params v1.Params
		runs   map[string]*v1.TaskRun
	}{
		{"values", goodParams("v", "i", "r"), runs},
		{"references in values", goodParams("$(params.required)", "$(tasks.first.results.out)", "$(params.s)"), runs},
		{"second skipped", goodParams("v", "i", "r"), map[string]*v1.TaskRun{"first": runs["first"]}},
		{"required parameter missing", goodParams("v", "i", "r")[:3], runs},
		{"wrong type", append(goodParams("v", "i", "r")[1:], v1.Param{Name: "s", Value: *v1.NewStructuredValues("a", "b")}), runs},
		{"object key missing", append(goodParams("v", "i", "r")[:2], goodParams("v", "i", "r")[3], v1.Param{Name: "obj", Value: *v1.NewObject(map[string]string{"k": "only"})}), runs},
		{"index out of bounds", append(goodParams("v", "i", "r")[1:], v1.Param{Name: "arr", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"one"}}}), runs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compare(t, pipelineSpec(t), pipelineRun(tc.params), tc.runs)
		})
	}

	// The fixture must exercise what it compares: validation refusals,
	// substitution, result references and pipeline results.
	bad := runOurs(pipelineSpec(t), pipelineRun(goodParams("v", "i", "r")[:3]), runs)
	if bad.ValidateErrs[0] == "" {
		t.Fatal("copy accepted a PipelineRun without the required parameter")
	}
	got := runOurs(pipelineSpec(t), pipelineRun(goodParams("v", "i", "r")), runs)
	if d := cmp.Diff(make([]string, 5), got.ValidateErrs); d != "" {
		t.Fatalf("copy refused a valid PipelineRun (-want +got):\n%s", d)
	}
	if a := got.Tasks[0].Params[0].Value.StringVal; a != "v i v pr p" {
		t.Fatalf("first's parameter a = %q, want %q", a, "v i v pr p")
	}
	if a := got.Tasks[1].Params[0].Value.StringVal; a != "plain-out l1 ok v-nested" {
		t.Fatalf("second's parameter a = %q, want results substituted", a)
	}
	if got.ResultsErr != "" || len(got.Results) != 3 || got.Results[0].Value.StringVal != "plain-out/second-out" {
		t.Fatalf("pipeline results %+v (%s)", got.Results, got.ResultsErr)
	}
}

// Parameter values and result values come from the pipeline a user runs
// and from what its steps wrote: any string must be handled as Tekton
// handles it.
func FuzzSameAsUpstream(f *testing.F) {
	f.Add("v", "i", "r", "plain-out", "l1")
	f.Add("$(params.arr[*])", "$(tasks.first.results.list[9])", "$(", "$(params.s", "$(context.pipelineRun.name)")
	f.Add("$(params[\"s\"])", "", "$(params.obj.nope)", "$$(params.s))", "${params.s}")
	f.Fuzz(func(t *testing.T, s, item, required, out, listItem string) {
		runs := map[string]*v1.TaskRun{
			"first":  taskRunOf("first", out, []string{listItem, out}, map[string]string{"k": listItem}),
			"second": taskRunOf("second", listItem, []string{out}, map[string]string{"k": fmt.Sprint(len(out))}),
		}
		compare(t, pipelineSpec(t), pipelineRun(goodParams(s, item, required)), runs)
	})
}

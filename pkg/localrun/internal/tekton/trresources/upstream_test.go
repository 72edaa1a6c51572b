package resources_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	upstream "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	ours "github.com/stepseal/stepseal/pkg/localrun/internal/tekton/trresources"
)

// The copy is only worth having if it substitutes exactly as Tekton does:
// every function the local runner calls is run on the same input through the
// copy and through Tekton's own package, and the results must be equal.

const taskYAML = `
params:
- name: s
  default: "plain"
- name: arr
  type: array
  default: ["a", "b", "c"]
- name: obj
  type: object
  properties: {k: {}, l: {}}
  default: {k: "kv", l: "lv"}
- name: ref
  default: "$(params.s)-nested"
results:
- name: out
- name: list
  type: array
workspaces:
- name: src
  mountPath: /custom/src
- name: cache
  optional: true
steps:
- name: build
  image: $(params.s)
  script: |
    echo $(params.s) $(params.obj.k) $(params["s"]) $(params.arr[1])
    echo $(context.taskRun.name) $(context.task.name) $(context.taskRun.namespace) $(context.task.retry-count)
    echo $(results.out.path) $(results.list.path) $(workspaces.src.path) $(workspaces.cache.bound)
    echo $(steps.step-build.exitCode.path) $(step.artifacts.path) $(artifacts.path)
  args: ["$(params.arr[*])", "x-$(params.obj.l)", "$(params.arr)"]
  env:
  - name: E
    value: $(params.ref)
  workingDir: $(workspaces.src.path)/$(params.s)
- name: unnamed-later
  image: busybox
  command: ["$(params.arr[*])"]
sidecars:
- name: side
  image: $(params.s)
  args: ["$(params.arr[*])"]
`

func taskSpec(t testing.TB) *v1.TaskSpec {
	t.Helper()
	var ts v1.TaskSpec
	if err := yaml.Unmarshal([]byte(taskYAML), &ts); err != nil {
		t.Fatal(err)
	}
	ts.SetDefaults(context.Background()) // as tekton.Load does
	return &ts
}

func taskRun(s string, arr []string, k string) *v1.TaskRun {
	return &v1.TaskRun{
		Spec: v1.TaskRunSpec{
			Params: v1.Params{
				{Name: "s", Value: *v1.NewStructuredValues(s)},
				{Name: "arr", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: arr}},
				{Name: "obj", Value: *v1.NewObject(map[string]string{"k": k, "l": "L"})},
			},
			Workspaces: []v1.WorkspaceBinding{{Name: "src", EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
	}
}

// apply runs the local runner's sequence (runner.go planTask) through one
// implementation.
type impl struct {
	validate     func(*v1.TaskSpec, v1.Params) error
	params       func(*v1.TaskSpec, *v1.TaskRun, ...v1.ParamSpec) *v1.TaskSpec
	contexts     func(*v1.TaskSpec, string, *v1.TaskRun) *v1.TaskSpec
	replacements func(*v1.TaskSpec, map[string]string, map[string][]string, map[string]map[string]string) *v1.TaskSpec
	workspaces   func(context.Context, *v1.TaskSpec, []v1.WorkspaceDeclaration, []v1.WorkspaceBinding, map[string]corev1.Volume) *v1.TaskSpec
}

var (
	upstreamImpl = impl{upstream.ValidateParamArrayIndex, upstream.ApplyParameters, upstream.ApplyContexts, upstream.ApplyReplacements, upstream.ApplyWorkspaces}
	oursImpl     = impl{ours.ValidateParamArrayIndex, ours.ApplyParameters, ours.ApplyContexts, ours.ApplyReplacements, ours.ApplyWorkspaces}
)

func (im impl) apply(ctx context.Context, ts *v1.TaskSpec, tr *v1.TaskRun) (*v1.TaskSpec, string) {
	ts = ts.DeepCopy()
	tr = tr.DeepCopy()
	tr.Name = "run-build"
	tr.Namespace = "ns"
	if err := im.validate(ts, tr.Spec.Params); err != nil {
		return nil, err.Error()
	}
	ts = im.params(ts, tr, ts.Params...)
	ts = im.contexts(ts, "build", tr)
	ts = im.replacements(ts, map[string]string{"results.out.path": "/tekton/results/out", "results.list.path": "/tekton/results/list"}, map[string][]string{}, map[string]map[string]string{})
	ts = im.workspaces(ctx, ts, ts.Workspaces, tr.Spec.Workspaces, workspace.CreateVolumes(tr.Spec.Workspaces))
	return ts, ""
}

func compare(t *testing.T, ts *v1.TaskSpec, tr *v1.TaskRun) {
	t.Helper()
	want, wantErr := upstreamImpl.apply(t.Context(), ts, tr)
	got, gotErr := oursImpl.apply(t.Context(), ts, tr)
	if gotErr != wantErr {
		t.Fatalf("ValidateParamArrayIndex: copy says %q, Tekton says %q", gotErr, wantErr)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("copy substitutes differently from Tekton (-tekton +copy):\n%s", d)
	}
}

func TestSameAsUpstream(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		arr  []string
		k    string
	}{
		{"values", "v", []string{"x", "y", "z"}, "K"},
		{"references in values", "$(params.arr[0])", []string{"$(params.s)", "$(context.taskRun.name)", "$(workspaces.src.path)"}, "$(params.obj.l)"},
		// arr[1] is referenced; a one-element array is out of bounds.
		{"index out of bounds", "v", []string{"only"}, "K"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compare(t, taskSpec(t), taskRun(tc.s, tc.arr, tc.k))
		})
	}
	// The out-of-bounds case must be an error in both, not equal successes.
	if _, err := oursImpl.apply(t.Context(), taskSpec(t), taskRun("v", []string{"only"}, "K")); err == "" {
		t.Fatal("copy accepted $(params.arr[1]) of a one-element array")
	}
	// And the fixture must exercise substitution at all (a default that refers
	// to another parameter is resolved against the defaults, as in Tekton).
	got, _ := oursImpl.apply(t.Context(), taskSpec(t), taskRun("v", []string{"x", "y", "z"}, "K"))
	if got.Steps[0].Image != "v" || got.Steps[0].WorkingDir != "/custom/src/v" || got.Steps[0].Env[0].Value != "plain-nested" {
		t.Fatalf("copy did not substitute: image %q, workingDir %q, env %q", got.Steps[0].Image, got.Steps[0].WorkingDir, got.Steps[0].Env[0].Value)
	}
	if d := cmp.Diff([]string{"x", "y", "z", "x-L", "x", "y", "z"}, got.Steps[0].Args); d != "" {
		t.Fatalf("array parameters (-want +got):\n%s", d)
	}
}

// Parameter values and scripts come from the pipeline a user runs: any
// string must be substituted as Tekton substitutes it.
func FuzzSameAsUpstream(f *testing.F) {
	f.Add("echo $(params.s)", "v", "x", "K")
	f.Add("$(params.arr[2]) $(params.obj.nope) $(params.missing)", "$(params.arr[*])", "$(", "$(params.s")
	f.Add("$(params[\"arr\"][*]) $(params['obj'].k) $(steps.build.results.r)", "$$(params.s))", "", "${params.s}")
	f.Fuzz(func(t *testing.T, script, s, item, k string) {
		ts := taskSpec(t)
		ts.Steps[0].Script = script
		ts.Steps[1].Args = []string{script}
		compare(t, ts, taskRun(s, []string{item, script, fmt.Sprint(len(s))}, k))
	})
}

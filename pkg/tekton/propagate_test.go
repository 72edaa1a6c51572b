package tekton

import (
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// Propagated workspaces: an inline taskSpec's used workspaces become its
// pipeline task's bindings (Tekton's PipelineRun reconciler), an inline
// pipelineSpec declares the run's workspaces its tasks use, and a TaskRun's
// inline taskSpec is bound to the TaskRun's workspaces; a referenced Task's
// pipeline task binds only what it names.
func TestPropagatedWorkspaces(t *testing.T) {
	dir := files(t, map[string]string{
		"pr.yaml": `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: prop}
spec:
  workspaces:
  - {name: a, emptyDir: {}}
  - {name: b, emptyDir: {}}
  - {name: unused, emptyDir: {}}
  pipelineSpec:
    tasks:
    - name: t
      workspaces: [{name: x, workspace: a}]
      taskSpec:
        workspaces: [{name: x}]
        steps:
        - {name: s, image: busybox, script: 'cat $(workspaces.x.path)/f > $(workspaces.b.path)/g; ls $(workspaces.a.path)'}
    finally:
    - name: f
      taskSpec:
        stepTemplate: {workingDir: $(workspaces.b.path)}
        steps:
        - {name: s, image: busybox, script: 'ls'}
`,
		"tr.yaml": `apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: tr}
spec:
  workspaces: [{name: w, emptyDir: {}}]
  taskSpec:
    steps:
    - {name: s, image: busybox, script: 'ls $(workspaces.w.path)'}
`,
	})
	s, err := Load(context.Background(), filepath.Join(dir, "pr.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.WorkspacePipelineTaskBinding{{Name: "x", Workspace: "a"}, {Name: "a"}, {Name: "b"}}
	if got := s.Pipeline.Spec.Tasks[0].Workspaces; !reflect.DeepEqual(got, want) {
		t.Errorf("t's bindings %+v, want %+v", got, want)
	}
	if got := s.Pipeline.Spec.Finally[0].Workspaces; !reflect.DeepEqual(got, []v1.WorkspacePipelineTaskBinding{{Name: "b"}}) {
		t.Errorf("f's bindings %+v: a stepTemplate's use propagates too", got)
	}
	if got := s.Pipeline.Spec.Workspaces; !reflect.DeepEqual(got, []v1.PipelineWorkspaceDeclaration{{Name: "a"}, {Name: "b"}}) {
		t.Errorf("declared %+v, want the run's workspaces the tasks use", got)
	}
	var names []string
	for _, b := range s.Workspaces(s.Pipeline.Spec.Tasks[0]) {
		names = append(names, b.TaskWorkspace+"->"+b.PipelineWorkspace)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{"a->a", "b->b", "x->a"}) {
		t.Errorf("Workspaces(t) = %v", names)
	}
	s, err = Load(context.Background(), filepath.Join(dir, "tr.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Pipeline.Spec.Tasks[0].Workspaces; !reflect.DeepEqual(got, []v1.WorkspacePipelineTaskBinding{{Name: "w", Workspace: "w"}}) {
		t.Errorf("TaskRun's task bindings %+v", got)
	}
	if got := s.Pipeline.Spec.Workspaces; !reflect.DeepEqual(got, []v1.PipelineWorkspaceDeclaration{{Name: "w"}}) {
		t.Errorf("TaskRun's pipeline workspaces %+v", got)
	}
}

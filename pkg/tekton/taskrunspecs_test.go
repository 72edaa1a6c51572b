package tekton

import (
	"path/filepath"
	"strings"
	"testing"
)

// What a run's taskRunTemplate and taskRunSpecs say that only a cluster
// uses is accepted, one line each naming the field and the task; the
// podTemplate env and the task's timeout are for the runner, merged by
// Tekton's GetTaskRunSpec.
func TestTaskRunSpecsAccepted(t *testing.T) {
	const run = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  taskRunTemplate:
    serviceAccountName: builder
    podTemplate:
      nodeSelector: {disk: ssd}
      env: [{name: FROM_TEMPLATE, value: all}]
  taskRunSpecs:
  - pipelineTaskName: t
    serviceAccountName: deployer
    timeout: 90s
    stepSpecs: [{name: s, computeResources: {limits: {cpu: "1"}}}]
    podTemplate:
      env: [{name: FROM_SPEC, value: t}]
      imagePullSecrets: [{name: regcred}]
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps: [{name: s, image: busybox, script: 'true'}]
    - name: u
      taskSpec:
        steps: [{name: s, image: busybox, script: 'true'}]
`
	dir := files(t, map[string]string{"run.yaml": run})
	s, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(s.Notes, "\n")
	for _, want := range []string{
		"PipelineRun r: taskRunTemplate: podTemplate.nodeSelector ignored",
		"PipelineRun r: taskRunTemplate: serviceAccountName builder ignored",
		"PipelineRun r: taskRunSpecs[0] (pipeline task t): stepSpecs ignored: compute resources are not enforced",
		"PipelineRun r: taskRunSpecs[0] (pipeline task t): serviceAccountName deployer ignored",
		"PipelineRun r: taskRunSpecs[0] (pipeline task t): podTemplate.imagePullSecrets ignored",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes do not say %q:\n%s", want, notes)
		}
	}
	for _, n := range s.Notes {
		if strings.Contains(n, "\n") {
			t.Errorf("note is not one line: %q", n)
		}
	}
	ts := s.Run.TaskRunSpec("t")
	if ts.Timeout == nil || ts.Timeout.Duration.String() != "1m30s" || ts.ServiceAccountName != "deployer" {
		t.Errorf("task t's spec = %+v", ts)
	}
	var env []string
	for _, e := range ts.PodTemplate.Env {
		env = append(env, e.Name)
	}
	if strings.Join(env, ",") != "FROM_SPEC,FROM_TEMPLATE" {
		t.Errorf("task t's podTemplate env = %v, want the task's and the template's merged", env)
	}
	if u := s.Run.TaskRunSpec("u"); u.Timeout != nil || len(u.PodTemplate.Env) != 1 {
		t.Errorf("task u's spec = %+v", u)
	}
}

// A TaskRun's stepSpecs and computeResources are accepted and named.
func TestTaskRunComputeResourcesNoted(t *testing.T) {
	const tr = "apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: tr}\nspec:\n  computeResources: {requests: {memory: 1Gi}}\n  podTemplate: {env: [{name: A, value: b}]}\n  taskSpec: {steps: [{name: s, image: busybox, script: 'true'}]}\n"
	dir := files(t, map[string]string{"run.yaml": tr})
	s, err := Load(t.Context(), filepath.Join(dir, "run.yaml"), "")
	if err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(s.Notes, "\n"); !strings.Contains(notes, "TaskRun tr: spec: computeResources ignored") {
		t.Errorf("notes = %q", notes)
	}
	if e := s.Run.TaskRunSpec("tr").PodTemplate.Env; len(e) != 1 || e[0].Name != "A" {
		t.Errorf("the TaskRun's podTemplate env = %v", e)
	}
}

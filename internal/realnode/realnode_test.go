package realnode_test

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/stepseal/stepseal/internal/realnode"
)

// TestRealNodeTaskRunTwoStepsResults: Tekton's controller turns a TaskRun of
// two script steps into a real Pod, the kubelet runs it, and the TaskRun
// succeeds with both results and, for each step, the imageID the runtime
// reports: the busybox image of the node's registry, by digest.
func TestRealNodeTaskRunTwoStepsResults(t *testing.T) {
	n := realnode.Get(t)
	ns := n.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	busybox := n.Image(t, "BUSYBOX")
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "two-steps", Namespace: ns},
		Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{
			Results: []v1.TaskResult{{Name: "greeting"}, {Name: "digest"}},
			Steps: []v1.Step{
				{Name: "one", Image: busybox, Script: "#!/bin/sh\nprintf 'hello from step one' > $(results.greeting.path)\n"},
				{Name: "two", Image: busybox, Script: "#!/bin/sh\nprintf 'sha256:%s' \"$(echo hello | sha256sum | cut -d' ' -f1)\" > $(results.digest.path)\n"},
			},
		}},
	}
	start := time.Now()
	if _, err := n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := realnode.WaitTaskRun(ctx, t, n.Tekton, ns, tr.Name)
	t.Logf("TaskRun done in %.1fs", time.Since(start).Seconds())
	if !got.IsSuccessful() {
		t.Fatalf("TaskRun failed: %+v", got.Status.GetCondition(apis.ConditionSucceeded))
	}
	// The registry's digest of busybox, as containerd reports it.
	wantID := busybox
	if len(got.Status.Steps) != 2 {
		t.Fatalf("want 2 step states, got %+v", got.Status.Steps)
	}
	for _, s := range got.Status.Steps {
		if s.ImageID != wantID {
			t.Errorf("step %s: imageID %q, want %q", s.Name, s.ImageID, wantID)
		}
		if s.Terminated == nil || s.Terminated.ExitCode != 0 {
			t.Errorf("step %s: %+v", s.Name, s.Terminated)
		}
	}
	results := map[string]string{}
	for _, r := range got.Status.Results {
		results[r.Name] = r.Value.StringVal
	}
	if results["greeting"] != "hello from step one" {
		t.Errorf("greeting = %q", results["greeting"])
	}
	// sha256 of "hello\n".
	if results["digest"] != "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" {
		t.Errorf("digest = %q", results["digest"])
	}
	if !strings.Contains(got.Status.PodName, tr.Name) {
		t.Errorf("pod %q", got.Status.PodName)
	}
}

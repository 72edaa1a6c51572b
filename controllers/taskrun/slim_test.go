package taskrun

import (
	"testing"

	"github.com/stepseal/stepseal/controllers/annotations"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
)

func finishedTaskRun(annotations map[string]string, finalizers ...string) *v1.TaskRun {
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: "tr", Namespace: "ns", Annotations: annotations, Finalizers: finalizers,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: v1.TaskRunSpec{ServiceAccountName: "builder"},
	}
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue})
	tr.Status.CompletionTime = &metav1.Time{}
	tr.Status.Steps = []v1.StepState{{Name: "build", ImageID: "img@sha256:00"}}
	tr.Status.Results = []v1.TaskRunResult{{Name: "IMAGE_DIGEST"}}
	return tr
}

func TestSlim(t *testing.T) {
	for _, tc := range []struct {
		name string
		tr   *v1.TaskRun
		slim bool
	}{
		{"unsigned", finishedTaskRun(nil), false},
		{"signed", finishedTaskRun(map[string]string{annotations.Signed: "true"}), true},
		{"failed", finishedTaskRun(map[string]string{annotations.Signed: "failed"}), true},
		{"signed, finalizer not yet removed", finishedTaskRun(map[string]string{annotations.Signed: "true"}, annotations.FinalizerTaskRun), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Slim(tc.tr)
			if err != nil {
				t.Fatal(err)
			}
			tr := out.(*v1.TaskRun)
			if tr.ManagedFields != nil {
				t.Error("managedFields kept")
			}
			if !tr.IsDone() || tr.Status.CompletionTime == nil {
				t.Error("slimmed TaskRun no longer reads as done")
			}
			if NeedsWork(tr) == tc.slim {
				t.Errorf("NeedsWork changed by Slim: %v", NeedsWork(tr))
			}
			slimmed := len(tr.Status.Steps) == 0 && tr.Status.Results == nil && tr.Spec.ServiceAccountName == ""
			if slimmed != tc.slim {
				t.Errorf("slimmed = %v, want %v (steps %d)", slimmed, tc.slim, len(tr.Status.Steps))
			}
			if tr.Annotations[annotations.Signed] != tc.tr.Annotations[annotations.Signed] || tr.Name != "tr" {
				t.Error("metadata changed")
			}
		})
	}
}

package lifecycle

import (
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/reference"
)

// An Event about a TaskRun or PipelineRun refers to it through client-go's
// scheme, as every EventRecorder does: without Tekton's kinds there the
// recorder drops the Event.
func TestEventsCanReferToRuns(t *testing.T) {
	meta := metav1.ObjectMeta{Namespace: "team", Name: "build-1", UID: "u1"}
	for _, obj := range []runtime.Object{&v1.TaskRun{ObjectMeta: meta}, &v1.PipelineRun{ObjectMeta: meta}} {
		ref, err := reference.GetReference(scheme.Scheme, obj)
		if err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
		if ref.APIVersion != "tekton.dev/v1" || ref.Name != "build-1" || ref.Kind == "" {
			t.Errorf("%T: reference %+v", obj, ref)
		}
	}
}

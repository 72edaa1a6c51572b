package pipelinerun

import (
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// TestIntegrationSignsBothLevels runs the TaskRun and PipelineRun
// controllers in-process, wired as images/controller wires them, against a
// real kube-apiserver: a PipelineRun's three child TaskRuns and then the
// PipelineRun finish the way Tekton writes them; every TaskRun and the
// PipelineRun must end up signed=true, and the PipelineRun's provenance must
// name every child's links and provenance by the digest of the stored bytes.
func TestIntegrationSignsBothLevels(t *testing.T) {
	api := controllertest.StartAPI(t, 2*time.Minute, nil)
	ctx, ns, tekton, dir, pub := api.Ctx, api.NS, api.Tekton, api.StoreDir, api.Pub

	// Both controllers, wired as images/controller wires them: one Shared.
	shared := controllertest.NewShared(t)
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, api.Config(), api.SystemNS, nil,
		taskrun.NewController(shared), NewController(shared))

	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: ns},
		Spec: v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{Tasks: []v1.PipelineTask{
			{Name: "fetch", TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "clone", Image: "alpine:3"}}}}},
		}}},
	}
	pr, err := tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var trs []*v1.TaskRun
	for i, task := range []string{"fetch", "build", "push"} {
		spec := &v1.TaskSpec{Steps: []v1.Step{{Name: "prepare", Image: "alpine:3"}, {Name: task, Image: "golang:1.26"}}}
		tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, kubetest.ChildTaskRun(pr, task, spec), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr, err = kubetest.FinishTaskRun(ctx, tekton, tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/"+task, i)}); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	if pr, err = kubetest.FinishPipelineRun(ctx, tekton, pr, kubetest.PipelineFinishOptions{TaskRuns: trs}); err != nil {
		t.Fatal(err)
	}

	kubetest.WaitPipelineRunSigned(ctx, t, tekton, ns, pr.Name)
	t.Logf("PipelineRun with %d TaskRuns signed at both levels %.1fs after the first TaskRun was created", len(trs), time.Since(start).Seconds())
	for _, tr := range trs {
		got, err := tekton.TektonV1().TaskRuns(ns).Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations[annotations.Signed] != annotations.SignedTrue {
			t.Errorf("%s: annotations %v", tr.Name, got.Annotations)
		}
	}
	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := controllertest.RunProvenance(t, ds, pub, pr)
	controllertest.CheckNamesEveryChild(t, ds, p, pr, trs, MediaTypeProvenance)
}

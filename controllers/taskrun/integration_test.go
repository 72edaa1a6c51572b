package taskrun

import (
	"fmt"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// TestIntegrationSignsEveryStep runs the controller in-process against a real
// kube-apiserver with Tekton's CRDs: TaskRuns are created, finished the way
// Tekton's controller writes their status, and must end up annotated
// signed=true, without the finalizer, with exactly one verified link per step
// and one verified provenance in the store.
func TestIntegrationSignsEveryStep(t *testing.T) {
	api := controllertest.StartAPI(t, 3*time.Minute, nil)
	ctx, ns, tekton, dir, pub := api.Ctx, api.NS, api.Tekton, api.StoreDir, api.Pub

	// The controller, wired as sharedmain wires it.
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, api.Config(), api.SystemNS, nil, NewController(controllertest.NewShared(t)))

	const n = 20
	steps := []v1.Step{{Name: "fetch", Image: "alpine:3"}, {Name: "build", Image: "golang:1.26"}, {Name: "push", Image: "crane:latest"}}
	start := time.Now()
	var trs []*v1.TaskRun
	for i := range n {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("build-%02d", i), Namespace: ns},
			Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: steps}},
		}
		tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		opts := kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", i-1)}
		if tr, err = kubetest.FinishTaskRun(ctx, tekton, tr, opts); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}

	// Wait for every TaskRun to be signed.
	for _, tr := range trs {
		kubetest.WaitTaskRunSigned(ctx, t, tekton, ns, tr.Name)
	}
	t.Logf("%d TaskRuns of %d steps signed %.1fs after the first was created", n, len(steps), time.Since(start).Seconds())

	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		var want []string
		for _, s := range steps {
			want = append(want, tr.Name+"."+s.Name)
		}
		verifyStored(t, ds, pub, string(tr.UID), want, 1)
	}
	all, err := ds.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n*(len(steps)+1) {
		t.Errorf("%d entries stored, want %d (a link per step and a provenance per TaskRun)", len(all), n*(len(steps)+1))
	}
}

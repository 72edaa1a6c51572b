package taskrun

import (
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/internal/controllertest"
)

// The lifecycle's cases for TaskRuns (sign once, resume, retry, give up,
// deletion, leadership) are the table of package lifecycle's tests; the
// tests here are about what only TaskRuns do: their record, KMS keys,
// images, the transparency log.

var (
	buildPushSteps = controllertest.BuildPushSteps
	verifyStored   = controllertest.VerifyStored
)

const buildPushRun = controllertest.BuildPushRun

// fixture is a controllertest.Fixture with the TaskRun Kind and its
// lifecycle Reconciler, the only replica.
type fixture struct {
	*controllertest.Fixture
	kind *Kind
	r    *lifecycle.Reconciler[*v1.TaskRun]
}

func newFixture(t *testing.T, cfg map[string]string, trs ...*v1.TaskRun) *fixture {
	t.Helper()
	objs := make([]metav1.Object, len(trs))
	for i, tr := range trs {
		objs[i] = tr
	}
	f := &fixture{Fixture: controllertest.New(t, cfg, objs...)}
	f.kind = &Kind{Tekton: f.Client, Lister: f.TaskRunLister(), Signing: f.Signing}
	f.r = lifecycle.New(f.kind, f.Config, f.Recorder, f.Metrics)
	if err := f.r.Promote(reconciler.UniversalBucket(), nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) reconcile(tr *v1.TaskRun) error { return f.Reconcile(f.r, tr) }

func (f *fixture) get(tr *v1.TaskRun) *v1.TaskRun { return f.TaskRun(tr) }

package taskrun

import (
	"context"
	"strconv"
	"sync"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
)

// maxErrorAnnotation bounds stepseal.dev/error.
const maxErrorAnnotation = 1024

// Run is what Attempts needs of a TaskRun or PipelineRun.
type Run interface {
	runtime.Object
	GetUID() types.UID
	GetAnnotations() map[string]string
}

// Attempts counts failed signing attempts per run and decides what a failure
// leads to; both reconcilers use it. Counts live in memory; a run's
// stepseal.dev/retries annotation (from an earlier process) is the floor.
type Attempts struct {
	mu sync.Mutex
	n  map[types.UID]int
}

// Forget drops the count of a run that is decided.
func (a *Attempts) Forget(uid types.UID) {
	a.mu.Lock()
	delete(a.n, uid)
	a.mu.Unlock()
}

func (a *Attempts) bump(run Run) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[types.UID]int{}
	}
	n := a.n[run.GetUID()]
	if r, err := strconv.Atoi(run.GetAnnotations()[AnnotationRetries]); err == nil && r > n {
		n = r
	}
	n++
	a.n[run.GetUID()] = n
	return n
}

// Failed handles an attempt on run that failed with err: unless it is
// permanent or the last of cfg.MaxRetries, the run is requeued after the
// backoff; otherwise it is given up — a Warning Event, then annotate with
// signed=failed, the error and the attempt count (the metric counts it only
// once the annotation is written).
func (a *Attempts) Failed(ctx context.Context, run Run, kind string, err error, permanent bool, cfg *settings.Config,
	recorder record.EventRecorder, m *metrics.Recorder, annotate func(map[string]*string) error) error {
	logger := logging.FromContext(ctx)
	attempt := a.bump(run)
	if !permanent && attempt < cfg.MaxRetries {
		delay := cfg.Backoff(attempt)
		logger.Warnw("signing failed, will retry", zap.Error(err), "attempt", attempt, "retryIn", delay)
		m.Retry(ctx, kind)
		return controller.NewRequeueAfter(delay)
	}
	a.Forget(run.GetUID())
	msg := err.Error()
	if len(msg) > maxErrorAnnotation {
		msg = msg[:maxErrorAnnotation] + "..."
	}
	logger.Errorw("signing given up", zap.Error(err), "attempts", attempt)
	recorder.Eventf(run, corev1.EventTypeWarning, "SigningFailed", "stepseal gave up after %d attempt(s): %s", attempt, msg)
	if err := annotate(map[string]*string{
		AnnotationSigned: ptr("failed"), AnnotationError: &msg, AnnotationRetries: ptr(strconv.Itoa(attempt)),
	}); err != nil {
		return ignoreNotFound(err)
	}
	m.Failed(ctx, kind)
	return nil
}

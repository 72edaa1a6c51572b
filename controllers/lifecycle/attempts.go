package lifecycle

import (
	"context"
	"strconv"
	"sync"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
)

// maxErrorAnnotation bounds stepseal.dev/error.
const maxErrorAnnotation = 1024

// attempts counts failed signing attempts per object and decides what a
// failure leads to (step 6). Counts live in memory; an object's
// stepseal.dev/retries annotation (from an earlier process) is the floor.
type attempts struct {
	mu sync.Mutex
	n  map[types.UID]int
}

// Forget drops the count of an object that is decided.
func (a *attempts) Forget(uid types.UID) {
	a.mu.Lock()
	delete(a.n, uid)
	a.mu.Unlock()
}

func (a *attempts) bump(obj Object) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[types.UID]int{}
	}
	n := a.n[obj.GetUID()]
	if r, err := strconv.Atoi(obj.GetAnnotations()[annotations.Retries]); err == nil && r > n {
		n = r
	}
	n++
	a.n[obj.GetUID()] = n
	return n
}

// Failed handles an attempt on obj that failed with err: unless it is
// permanent or the last of cfg.MaxRetries, the key is requeued after the
// backoff; otherwise it is given up — a Warning Event, then annotate with
// signed=failed, the error and the attempt count (the metric counts it only
// once the annotation is written).
func (a *attempts) Failed(ctx context.Context, obj Object, kind string, err error, permanent bool, cfg *settings.Config,
	recorder record.EventRecorder, m *metrics.Recorder, annotate func(map[string]*string) error) error {
	logger := logging.FromContext(ctx)
	attempt := a.bump(obj)
	if !permanent && attempt < cfg.MaxRetries {
		delay := cfg.Backoff(attempt)
		logger.Warnw("signing failed, will retry", zap.Error(err), "attempt", attempt, "retryIn", delay)
		m.Retry(ctx, kind)
		return controller.NewRequeueAfter(delay)
	}
	a.Forget(obj.GetUID())
	msg := err.Error()
	if len(msg) > maxErrorAnnotation {
		msg = msg[:maxErrorAnnotation] + "..."
	}
	logger.Errorw("signing given up", zap.Error(err), "attempts", attempt)
	recorder.Eventf(obj, corev1.EventTypeWarning, "SigningFailed", "stepseal gave up after %d attempt(s): %s", attempt, msg)
	if err := annotate(map[string]*string{
		annotations.Signed: ptr(annotations.SignedFailed), annotations.Error: &msg, annotations.Retries: ptr(strconv.Itoa(attempt)),
	}); err != nil {
		return ignoreNotFound(err)
	}
	m.Failed(ctx, kind)
	return nil
}

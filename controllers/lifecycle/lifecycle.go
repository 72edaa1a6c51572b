package lifecycle

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
)

// Object is what the lifecycle needs of an object of any kind: its
// metadata, and being a runtime.Object (deep copies, Events).
type Object interface {
	metav1.Object
	runtime.Object
}

// Kind is what differs between the kinds of objects the lifecycle seals.
type Kind[T Object] interface {
	// Name is the kind's name in metrics (the "kind" attribute) and logs,
	// e.g. metrics.KindTaskRun.
	Name() string
	// Finalizer is the finalizer that holds an object until it is decided.
	Finalizer() string
	// Get returns the cached object (a lister's Get; not found: an
	// apierrors NotFound error).
	Get(namespace, name string) (T, error)
	// List returns every cached object, for enqueueing on promotion.
	List() ([]T, error)
	// Patch applies a JSON merge patch to obj and returns the result.
	Patch(ctx context.Context, obj T, patch []byte) (T, error)
	// IsDone reports whether obj finished, so there is something to attest.
	IsDone(obj T) bool
	// CompletedAt is obj's completion time, zero when unknown.
	CompletedAt(obj T) time.Time
	// Attest signs and stores obj's evidence in every backend of cfg and
	// returns how many entries were stored and the transparency-log index
	// to annotate ("" for none). A requeue error (Wait) means "not yet".
	Attest(ctx context.Context, obj T, cfg *settings.Config) (entries int, logIndex string, err error)
	// Permanent reports whether err cannot go away by retrying.
	Permanent(err error) bool
}

// logCheckpointer is a Kind that can name the signed checkpoint covering
// the log index its Attest returned (every Kind embedding *Signing).
type logCheckpointer interface {
	LogCheckpoint(ctx context.Context, cfg *settings.Config) (string, error)
}

// Reconciler runs the lifecycle (see the package doc) for objects of one
// Kind. It is a knative controller.Reconciler driven by a key queue, not a
// generated reconciler: that one adds its finalizer to every object it sees
// and removes it only on deletion, while stepseal removes it as soon as an
// object is signed (so uninstalling stepseal never blocks deletions of
// signed runs), and must still be called for objects being deleted.
//
// It is leader-aware (reconciler.LeaderAware): with knative's leader
// election a replica reconciles only keys of the buckets whose Lease it
// holds, and enqueues all of a bucket's pending keys when promoted.
//
// The zero value of the unexported fields is ready; set the exported ones.
type Reconciler[T Object] struct {
	Kind     Kind[T]
	Config   *settings.Store
	Recorder record.EventRecorder
	// Metrics records outcomes; nil records nothing.
	Metrics *metrics.Recorder

	leader   reconciler.LeaderAwareFuncs
	attempts attempts
}

// New returns the Reconciler of kind k.
func New[T Object](k Kind[T], cfg *settings.Store, recorder record.EventRecorder, m *metrics.Recorder) *Reconciler[T] {
	return &Reconciler[T]{Kind: k, Config: cfg, Recorder: recorder, Metrics: m}
}

// Wait is what Kind.Attest returns when what it attests is not ready yet:
// the key is looked at again after d, and no attempt is counted.
func Wait(d time.Duration) error { return controller.NewRequeueAfter(d) }

// Promote implements reconciler.LeaderAware: this replica now leads bucket
// b, so every object of b that needs work is enqueued. knative's Impl calls
// it from its elector (an unopposed one, with every key in one bucket, when
// leader election is off).
func (r *Reconciler[T]) Promote(b reconciler.Bucket, enq func(reconciler.Bucket, types.NamespacedName)) error {
	if err := r.leader.Promote(b, nil); err != nil {
		return err
	}
	if enq == nil {
		return nil
	}
	all, err := r.Kind.List()
	if err != nil {
		return err
	}
	for _, o := range all {
		nn := types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
		if r.NeedsWork(o) && b.Has(nn) {
			enq(b, nn)
		}
	}
	return nil
}

// Demote implements reconciler.LeaderAware: keys of b are left to the
// replica that leads it now.
func (r *Reconciler[T]) Demote(b reconciler.Bucket) { r.leader.Demote(b) }

// NeedsWork is the informer filter: objects of kind T not yet decided
// (running ones get the finalizer, finished ones are signed), and any still
// holding the kind's finalizer.
func (r *Reconciler[T]) NeedsWork(obj any) bool { return NeedsWork[T](obj, r.Kind.Finalizer()) }

// NeedsWork reports whether obj is a T that is not yet decided or still
// holds finalizer.
func NeedsWork[T Object](obj any, finalizer string) bool {
	o, ok := obj.(T)
	if !ok {
		return false
	}
	return HasFinalizer(o, finalizer) || !annotations.IsDecided(o.GetAnnotations())
}

// refusedConfigRetry is how often a run waits again for a stepseal-config
// that can be accepted (Config.Refused).
const refusedConfigRetry = 15 * time.Second

// Reconcile implements controller.Reconciler: the steps of the package doc.
func (r *Reconciler[T]) Reconcile(ctx context.Context, key string) error {
	// 1. Leader check.
	ctx, cached, found, err := r.lookup(ctx, key)
	if !found {
		return err
	}
	logger := logging.FromContext(ctx)
	obj := cached.DeepCopyObject().(T)
	cfg := r.Config.Load()
	finalizer := r.Kind.Finalizer()
	if annotations.IsDecided(obj.GetAnnotations()) {
		if HasFinalizer(obj, finalizer) {
			// Decided, finalizer left over (the annotating patch failed).
			_, err := r.patch(ctx, obj, nil, false)
			return ignoreNotFound(err)
		}
		return nil
	}

	// 2. Finalizer from first sight.
	if obj.GetDeletionTimestamp() == nil && !HasFinalizer(obj, finalizer) {
		if obj, err = r.patch(ctx, obj, nil, true); err != nil {
			return ignoreNotFound(err)
		}
	}

	// 3. Wait until done; deleted before done releases the finalizer.
	if !r.Kind.IsDone(obj) {
		if obj.GetDeletionTimestamp() != nil && HasFinalizer(obj, finalizer) {
			_, err := r.patch(ctx, obj, nil, false)
			return ignoreNotFound(err)
		}
		return nil
	}

	// 4. Attest and store; not while stepseal-config is refused (with no
	// good configuration to keep, the defaults are not what was meant).
	if cfg.Refused != nil {
		logger.Errorw("not signing: the configuration was refused", zap.Error(cfg.Refused))
		return controller.NewRequeueAfter(refusedConfigRetry)
	}
	extra := map[string]*string{}
	n, logIndex, err := r.Kind.Attest(context.WithValue(ctx, extraKey{}, extra), obj, cfg)
	if wait, _ := controller.IsRequeueKey(err); wait {
		return err
	}

	// 5. Annotate.
	if err == nil {
		r.attempts.Forget(obj.GetUID())
		a := map[string]*string{
			annotations.Signed: ptr(annotations.SignedTrue), annotations.Error: nil, annotations.Retries: nil,
			annotations.LogIndex: nonEmpty(logIndex),
		}
		if c, ok := any(r.Kind).(logCheckpointer); ok && logIndex != "" {
			// Gossip, not evidence: a run stays signed without it.
			cp, cerr := c.LogCheckpoint(ctx, cfg)
			if cerr != nil {
				logger.Warnw("no log checkpoint to annotate", zap.Error(cerr))
			}
			a[annotations.LogCheckpoint] = nonEmpty(cp)
		}
		for k, v := range extra {
			if _, ours := a[k]; !ours {
				a[k] = v
			}
		}
		_, err = r.patch(ctx, obj, a, false)
		if err != nil {
			return ignoreNotFound(err)
		}
		r.Metrics.Signed(ctx, r.Kind.Name(), r.Kind.CompletedAt(obj), time.Now())
		logger.Infow("signed", "entries", n, "backends", cfg.Backends)
		return nil
	}

	// 6. Retry or give up.
	return r.attempts.Failed(ctx, obj, r.Kind.Name(), err, r.Kind.Permanent(err), cfg, r.Recorder, r.Metrics, func(a map[string]*string) error {
		_, err := r.patch(ctx, obj, a, false)
		return err
	})
}

type extraKey struct{}

// Annotate, called by a Kind's Attest with the ctx it was given, adds an
// annotation the lifecycle writes in the same patch as signed=true, when
// Attest succeeds (the PipelineRun's stepseal.dev/vsa). It is a no-op on
// any other ctx, and cannot override the lifecycle's own annotations.
// Attest's goroutine only.
func Annotate(ctx context.Context, key, value string) {
	if m, ok := ctx.Value(extraKey{}).(map[string]*string); ok {
		m[key] = &value
	}
}

// lookup begins a reconcile of key: nothing to do (found false) unless this
// replica leads the key's bucket and the object is still in the cache. The
// context it returns logs with <kind>=key.
func (r *Reconciler[T]) lookup(ctx context.Context, key string) (_ context.Context, obj T, found bool, err error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return ctx, obj, false, controller.NewPermanentError(err)
	}
	if !r.leader.IsLeaderFor(types.NamespacedName{Namespace: ns, Name: name}) {
		return ctx, obj, false, nil
	}
	ctx = logging.WithLogger(ctx, logging.FromContext(ctx).With(zap.String(r.Kind.Name(), key)))
	obj, err = r.Kind.Get(ns, name)
	if apierrors.IsNotFound(err) {
		return ctx, obj, false, nil
	}
	return ctx, obj, err == nil, err
}

// patch merge-patches obj's annotations (nil value: remove) and adds or
// removes the kind's finalizer, guarded by obj's resourceVersion.
func (r *Reconciler[T]) patch(ctx context.Context, obj T, annotations map[string]*string, addFinalizer bool) (T, error) {
	body, err := MetaPatch(obj, r.Kind.Finalizer(), addFinalizer, annotations)
	if err != nil {
		var zero T
		return zero, err
	}
	return r.Kind.Patch(ctx, obj, body)
}

// MetaPatch is the JSON merge patch the lifecycle writes: annotations (nil
// value: remove), finalizer added or removed, guarded by obj's
// resourceVersion: a concurrent change makes it fail with a conflict and
// the key is retried.
func MetaPatch(obj metav1.Object, finalizer string, addFinalizer bool, annotations map[string]*string) ([]byte, error) {
	finalizers := []string{}
	for _, f := range obj.GetFinalizers() {
		if f != finalizer {
			finalizers = append(finalizers, f)
		}
	}
	if addFinalizer {
		finalizers = append(finalizers, finalizer)
	}
	meta := map[string]any{"resourceVersion": obj.GetResourceVersion(), "finalizers": finalizers}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

// HasFinalizer reports whether obj carries finalizer.
func HasFinalizer(obj metav1.Object, finalizer string) bool {
	return slices.Contains(obj.GetFinalizers(), finalizer)
}

// nonEmpty is &s, or nil (remove the annotation) for "".
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func ptr(s string) *string { return &s }

package lifecycle

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	"knative.dev/pkg/configmap"
	cminformer "knative.dev/pkg/configmap/informer"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/system"

	tektonscheme "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/scheme"

	"github.com/stepseal/stepseal/controllers/backends"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/trustwatch"
	"github.com/stepseal/stepseal/pkg/store"
)

// Events are recorded through client-go's scheme (knative's recorder and
// ours), which must know Tekton's kinds to refer to a TaskRun or
// PipelineRun; without them every Event about a run (SigningFailed, the
// VSA's) is dropped ("no kind is registered"). knative's generated
// reconcilers register their types the same way.
func init() {
	utilruntime.Must(tektonscheme.AddToScheme(scheme.Scheme))
}

// Shared is what the controllers of one process share, made once by the
// process (images/controller's main: NewShared) and passed to each
// controller's constructor, the way tektoncd/pipeline passes its options and
// clock to NewController; a test makes its own. It holds:
//
//   - the signer cache: a cosign key is decrypted (scrypt) once per process,
//     a KMS signer set up once per URI, whichever controller asks first;
//   - the open stores, by directory (a tlog directory can be opened once per
//     process);
//   - from the first Common call on: the live stepseal-config (one
//     settings.Store, one ConfigMap watch), the one informer of Secrets of
//     the system namespace, and the metrics instruments.
//
// The zero value is not usable: call NewShared.
type Shared struct {
	signers signerCache
	stores  backends.Stores

	once      sync.Once
	namespace string
	config    *settings.Store
	secrets   coreinformers.SecretInformer
	metrics   *metrics.Recorder
	trust     *trustwatch.Watcher
}

// archiveTrust appends an accepted TUF metadata file to the embedded
// transparency log when the tlog backend is configured (idempotent on the
// file's digest); without it there is nowhere to append, and nothing is.
func (s *Shared) archiveTrust(ctx context.Context, name string, data []byte) error {
	cfg := s.config.Load()
	if !slices.Contains(cfg.Backends, settings.BackendTLog) {
		return nil
	}
	st, err := s.stores.Log(ctx, cfg.TLogDir, cfg.TLogKey, cfg.TLogOrigin)
	if err != nil {
		return err
	}
	_, err = st.Put(ctx, store.Entry{Kind: store.KindTrust, Name: name, Data: data, Subjects: []string{store.Digest(data)}})
	return err
}

// Trust is the process's TUF trust watcher (nil before the first
// controller was set up); its Root is nil while no repository is
// configured or nothing verified yet.
func (s *Shared) Trust() *trustwatch.Watcher { return s.trust }

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{} }

// Close closes the open stores that hold resources (store.Closer: a tlog
// directory's lock and checkpointer), once the controllers have stopped.
// Later reconciles would open them again.
func (s *Shared) Close(ctx context.Context) error { return s.stores.Close(ctx) }

// errNoShared: a Signing without a Shared cannot sign.
var errNoShared = errors.New("lifecycle: Signing has no Shared (lifecycle.NewShared)")

// Common is what a controller sets up from the injection context: its own
// logger and Event recorder (named name), and the process's live
// stepseal-config, informer of Secrets of the system namespace only (so
// RBAC on Secrets is a Role there) and metrics instruments, which are
// Shared.
type Common struct {
	Logger    *zap.SugaredLogger
	Namespace string
	Recorder  record.EventRecorder
	Config    *settings.Store
	Secrets   coreinformers.SecretInformer
	Metrics   *metrics.Recorder

	shared *Shared
}

// Common builds the Common parts of the controller named name. The first
// call sets up the shared parts from its ctx and cmw (sharedmain gives every
// constructor the same ones) and starts the Secret informer, which no
// handler watches, for as long as ctx lives; later calls reuse them.
// stepseal-config's Warning Events and log lines come from the first
// controller.
func (s *Shared) Common(ctx context.Context, cmw configmap.Watcher, name string) Common {
	logger := logging.FromContext(ctx).Named(name)
	kube := kubeclient.Get(ctx)

	recorder := controller.GetEventRecorder(ctx)
	if recorder == nil {
		b := record.NewBroadcaster()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
		recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: name})
		go func() { <-ctx.Done(); b.Shutdown() }()
	}

	s.once.Do(func() {
		ns := system.Namespace()
		s.namespace = ns
		s.secrets = informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Hour, informers.WithNamespace(ns)).Core().V1().Secrets()
		inf := s.secrets.Informer()

		s.config = settings.NewStore(logger, recorder)
		if iw, ok := cmw.(*cminformer.InformedWatcher); ok {
			// An absent ConfigMap means the defaults, not a failed start.
			iw.WatchWithDefault(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: ns}}, s.config.OnConfigChanged)
		} else {
			cmw.Watch(settings.ConfigMapName, s.config.OnConfigChanged)
		}

		rec, err := metrics.New(otel.GetMeterProvider())
		if err != nil {
			logger.Fatalw("creating metrics", "error", err)
		}
		s.metrics = rec
		// The TUF trust root (trust.* keys): refreshed on an interval,
		// Events on stepseal-config, metrics; idle while unconfigured.
		tw, err := trustwatch.New(trustwatch.Options{Config: s.config.Load, Recorder: recorder,
			Object: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: ns}},
			Logger: logger.Named("trust"), Meter: otel.GetMeterProvider(), Kube: kube, Namespace: ns,
			Archive: s.archiveTrust})
		if err != nil {
			logger.Fatalw("creating the trust watcher", "error", err)
		}
		s.trust = tw
		go tw.Run(ctx)
		go inf.Run(ctx.Done())
	})
	return Common{Logger: logger, Namespace: s.namespace, Recorder: recorder, Config: s.config, Secrets: s.secrets, Metrics: s.metrics, shared: s}
}

// Signing returns a new Signing of the process's signer cache, open stores
// and Secrets of the system namespace, for the controller's Kind.
func (c Common) Signing() *Signing {
	return &Signing{Secrets: c.Secrets.Lister(), SystemNamespace: c.Namespace, Shared: c.shared}
}

// NewImpl returns the knative Impl that runs r under the work queue name,
// with every object of inf that needs work (r.NeedsWork) enqueued. The
// informer's transform, if any, must be set before.
func NewImpl[T Object](ctx context.Context, c Common, name string, r *Reconciler[T], inf cache.SharedIndexInformer) *controller.Impl {
	impl := controller.NewContext(ctx, r, controller.ControllerOptions{WorkQueueName: name, Logger: c.Logger})
	if _, err := inf.AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: r.NeedsWork,
		Handler:    controller.HandleAll(impl.Enqueue),
	}); err != nil {
		c.Logger.Fatalw("watching "+r.Kind.Name(), "error", err)
	}
	return impl
}

package taskrun

import (
	"context"
	"time"

	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	taskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun"
	"go.opentelemetry.io/otel"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
)

// ControllerName names the work queue, the Event source and the logger.
const ControllerName = "stepseal-taskrun"

// NewController is the knative injection constructor of the TaskRun
// controller (for sharedmain.Main). It watches TaskRuns through Tekton's
// injected informer, Secrets of the system namespace only (so its RBAC on
// Secrets is a Role there), and the stepseal-config ConfigMap through cmw.
func NewController(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
	c := NewCommon(ctx, cmw, ControllerName)
	r := &Reconciler{
		Tekton:          pipelineclient.Get(ctx),
		Lister:          taskruninformer.Get(ctx).Lister(),
		Secrets:         c.Secrets.Lister(),
		SystemNamespace: c.Namespace,
		Config:          c.Config,
		Recorder:        c.Recorder,
		Metrics:         c.Metrics,
	}
	logger := c.Logger
	if err := SetSlimTransform(taskruninformer.Get(ctx).Informer()); err != nil {
		logger.Fatalw("watching TaskRuns", "error", err)
	}
	impl := controller.NewContext(ctx, r, controller.ControllerOptions{WorkQueueName: ControllerName, Logger: logger})
	if _, err := taskruninformer.Get(ctx).Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: NeedsWork,
		Handler:    controller.HandleAll(impl.Enqueue),
	}); err != nil {
		logger.Fatalw("watching TaskRuns", "error", err)
	}
	go c.Secrets.Informer().Run(ctx.Done())
	return impl
}

// Common is what the TaskRun and PipelineRun controllers set up alike from
// the injection context: a logger, an Event recorder, the live
// stepseal-config, an informer of Secrets of the system namespace only (so
// RBAC on Secrets is a Role there; the caller runs it once its handlers are
// registered), and the metrics instruments.
type Common struct {
	Logger    *zap.SugaredLogger
	Namespace string
	Recorder  record.EventRecorder
	Config    *settings.Store
	Secrets   coreinformers.SecretInformer
	Metrics   *metrics.Recorder
}

// NewCommon builds the Common parts of the controller named name.
func NewCommon(ctx context.Context, cmw configmap.Watcher, name string) Common {
	logger := logging.FromContext(ctx).Named(name)
	kube := kubeclient.Get(ctx)
	ns := system.Namespace()

	secrets := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Hour, informers.WithNamespace(ns)).Core().V1().Secrets()
	_ = secrets.Informer() // register before Start

	recorder := controller.GetEventRecorder(ctx)
	if recorder == nil {
		b := record.NewBroadcaster()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
		recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: name})
		go func() { <-ctx.Done(); b.Shutdown() }()
	}

	cfg := settings.NewStore(logger, recorder)
	if iw, ok := cmw.(*cminformer.InformedWatcher); ok {
		// An absent ConfigMap means the defaults, not a failed start.
		iw.WatchWithDefault(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: ns}}, cfg.OnConfigChanged)
	} else {
		cmw.Watch(settings.ConfigMapName, cfg.OnConfigChanged)
	}

	rec, err := metrics.New(otel.GetMeterProvider())
	if err != nil {
		logger.Fatalw("creating metrics", "error", err)
	}
	return Common{Logger: logger, Namespace: ns, Recorder: recorder, Config: cfg, Secrets: secrets, Metrics: rec}
}

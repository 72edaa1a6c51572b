package pipelinerun

import (
	"context"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	pipelineruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/pipelinerun"
	taskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun"
	"go.opentelemetry.io/otel"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
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
	"github.com/stepseal/stepseal/controllers/taskrun"
)

// ControllerName names the work queue, the Event source and the logger.
const ControllerName = "stepseal-pipelinerun"

// NewController is the knative injection constructor of the PipelineRun
// controller (for sharedmain.Main, next to taskrun.NewController). It
// watches PipelineRuns, and TaskRuns of a PipelineRun that reach
// stepseal.dev/signed so their PipelineRun is looked at again at once. Keys
// and backends are resolved the TaskRun controller's way (taskrun.Reconciler
// Signer and Backends) from the same stepseal-config.
func NewController(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
	logger := logging.FromContext(ctx).Named(ControllerName)
	kube := kubeclient.Get(ctx)
	ns := system.Namespace()

	secrets := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Hour, informers.WithNamespace(ns)).Core().V1().Secrets()
	_ = secrets.Informer()

	recorder := controller.GetEventRecorder(ctx)
	if recorder == nil {
		b := record.NewBroadcaster()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
		recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: ControllerName})
		go func() { <-ctx.Done(); b.Shutdown() }()
	}

	cfg := settings.NewStore(logger, recorder)
	if iw, ok := cmw.(*cminformer.InformedWatcher); ok {
		iw.WatchWithDefault(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: ns}}, cfg.OnConfigChanged)
	} else {
		cmw.Watch(settings.ConfigMapName, cfg.OnConfigChanged)
	}
	rec, err := metrics.New(otel.GetMeterProvider())
	if err != nil {
		logger.Fatalw("creating metrics", "error", err)
	}
	keys := &taskrun.Reconciler{Secrets: secrets.Lister(), SystemNamespace: ns, Config: cfg}
	r := &Reconciler{
		Tekton:   pipelineclient.Get(ctx),
		Lister:   pipelineruninformer.Get(ctx).Lister(),
		TaskRuns: taskruninformer.Get(ctx).Lister(),
		Config:   cfg,
		Recorder: recorder,
		Signer:   keys.Signer,
		Backends: keys.Backends,
		Metrics:  rec,
	}
	impl := controller.NewContext(ctx, r, controller.ControllerOptions{WorkQueueName: ControllerName, Logger: logger})
	if _, err := pipelineruninformer.Get(ctx).Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: NeedsWork,
		Handler:    controller.HandleAll(impl.Enqueue),
	}); err != nil {
		logger.Fatalw("watching PipelineRuns", "error", err)
	}
	if _, err := taskruninformer.Get(ctx).Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: childDecided,
		Handler:    controller.HandleAll(impl.EnqueueLabelOfNamespaceScopedResource("", pipeline.PipelineRunLabelKey)),
	}); err != nil {
		logger.Fatalw("watching TaskRuns", "error", err)
	}
	go secrets.Informer().Run(ctx.Done())
	return impl
}

// childDecided: a TaskRun of a PipelineRun that is signed or failed.
func childDecided(obj any) bool {
	tr, ok := obj.(*v1.TaskRun)
	if !ok || tr.Labels[pipeline.PipelineRunLabelKey] == "" {
		return false
	}
	s := tr.Annotations[taskrun.AnnotationSigned]
	return s == "true" || s == "failed"
}

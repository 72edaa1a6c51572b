package taskrun

import (
	"context"

	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	taskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun"
	"k8s.io/client-go/tools/cache"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
)

// ControllerName names the work queue, the Event source and the logger.
const ControllerName = "stepseal-taskrun"

// NewController returns the knative injection constructor of the TaskRun
// controller (for sharedmain.Main), sharing s with the process's other
// controllers. It watches TaskRuns through Tekton's injected informer,
// Secrets of the system namespace only (so its RBAC on Secrets is a Role
// there), and the stepseal-config ConfigMap through cmw (s.Common).
func NewController(s *Shared) injection.ControllerConstructor {
	return func(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
		c := s.Common(ctx, cmw, ControllerName)
		r := &Reconciler{
			Tekton:          pipelineclient.Get(ctx),
			Lister:          taskruninformer.Get(ctx).Lister(),
			Secrets:         c.Secrets.Lister(),
			SystemNamespace: c.Namespace,
			Config:          c.Config,
			Recorder:        c.Recorder,
			Metrics:         c.Metrics,
			Shared:          s,
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
		return impl
	}
}

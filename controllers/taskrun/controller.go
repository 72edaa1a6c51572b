package taskrun

import (
	"context"

	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	taskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"

	"github.com/stepseal/stepseal/controllers/lifecycle"
)

// ControllerName names the work queue, the Event source and the logger.
const ControllerName = "stepseal-taskrun"

// NewController returns the knative injection constructor of the TaskRun
// controller (for sharedmain.Main), sharing s with the process's other
// controllers. It watches TaskRuns through Tekton's injected informer,
// Secrets of the system namespace only (so its RBAC on Secrets is a Role
// there), and the stepseal-config ConfigMap through cmw (s.Common).
func NewController(s *lifecycle.Shared) injection.ControllerConstructor {
	return NewControllerWithLogs(s, nil)
}

// NewControllerWithLogs is NewController reading the record StepActions'
// logs with logs instead of through the API server's pods/log (nil).
func NewControllerWithLogs(s *lifecycle.Shared, logs PodLogs) injection.ControllerConstructor {
	return func(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
		podLogs := logs
		if podLogs == nil {
			podLogs = KubePodLogs{Kube: kubeclient.Get(ctx)}
		}
		c := s.Common(ctx, cmw, ControllerName)
		k := &Kind{Tekton: pipelineclient.Get(ctx), Lister: taskruninformer.Get(ctx).Lister(), Signing: c.Signing(),
			PodLogs: podLogs}
		inf := taskruninformer.Get(ctx).Informer()
		if err := SetSlimTransform(inf); err != nil {
			c.Logger.Fatalw("watching TaskRuns", "error", err)
		}
		return lifecycle.NewImpl(ctx, c, ControllerName, lifecycle.New(k, c.Config, c.Recorder, c.Metrics), inf)
	}
}

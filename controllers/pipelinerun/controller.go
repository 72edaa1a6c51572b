package pipelinerun

import (
	"context"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	pipelineruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/pipelinerun"
	taskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun"
	"k8s.io/client-go/tools/cache"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/pkg/trustroot"
)

// ControllerName names the work queue, the Event source and the logger.
const ControllerName = "stepseal-pipelinerun"

// NewController returns the knative injection constructor of the
// PipelineRun controller (for sharedmain.Main, next to
// taskrun.NewController with the same s). It watches PipelineRuns, and
// TaskRuns of a PipelineRun that reach stepseal.dev/signed so their
// PipelineRun is looked at again at once. Keys and backends are resolved
// the TaskRun controller's way (lifecycle.Signing), from the same
// stepseal-config, signer cache and open stores (s).
func NewController(s *lifecycle.Shared) injection.ControllerConstructor {
	return func(ctx context.Context, cmw configmap.Watcher) *controller.Impl {
		return newController(ctx, cmw, s)
	}
}

func newController(ctx context.Context, cmw configmap.Watcher, s *lifecycle.Shared) *controller.Impl {
	c := s.Common(ctx, cmw, ControllerName)
	logger := c.Logger
	k := &Kind{
		Tekton:   pipelineclient.Get(ctx),
		Lister:   pipelineruninformer.Get(ctx).Lister(),
		TaskRuns: taskruninformer.Get(ctx).Lister(),
		Signing:  c.Signing(),
		Recorder: c.Recorder,
		Trust: func() *trustroot.Root {
			if w := s.Trust(); w != nil {
				return w.Root()
			}
			return nil
		},
	}
	for _, inf := range []cache.SharedIndexInformer{pipelineruninformer.Get(ctx).Informer(), taskruninformer.Get(ctx).Informer()} {
		if err := taskrun.SetSlimTransform(inf); err != nil {
			logger.Fatalw("setting up informers", "error", err)
		}
	}
	impl := lifecycle.NewImpl(ctx, c, ControllerName, lifecycle.New(k, c.Config, c.Recorder, c.Metrics), pipelineruninformer.Get(ctx).Informer())
	if _, err := taskruninformer.Get(ctx).Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: childDecided,
		Handler:    controller.HandleAll(impl.EnqueueLabelOfNamespaceScopedResource("", pipeline.PipelineRunLabelKey)),
	}); err != nil {
		logger.Fatalw("watching TaskRuns", "error", err)
	}
	return impl
}

// childDecided: a TaskRun of a PipelineRun that is signed or failed.
func childDecided(obj any) bool {
	tr, ok := obj.(*v1.TaskRun)
	if !ok || tr.Labels[pipeline.PipelineRunLabelKey] == "" {
		return false
	}
	return annotations.IsDecided(tr.Annotations)
}

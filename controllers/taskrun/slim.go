package taskrun

import (
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/client-go/tools/cache"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
)

// Slim is the cache.TransformFunc of the TaskRun and PipelineRun informers.
// It keeps the informer cache small when a cluster holds many finished runs
// (tektoncd/chains#979: Chains caches whole TaskRuns and needs GiBs):
//
//   - managedFields are dropped from every object (nothing here reads them);
//   - a run that needs no more work (signed or failed, no finalizer of ours)
//     keeps only its metadata and the status conditions and times. Spec,
//     steps, results, artifacts and the resolved spec are dropped.
//
// Runs still to be signed are cached whole, so the reconcilers read them
// from the lister as before. Whoever needs the whole of a decided run (the
// PipelineRun reconciler reading its signed children) GETs it from the API.
// A decided run that becomes undecided again (its annotation removed) comes
// back whole with the update event, because the transform sees every new
// version of an object.
func Slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.TaskRun:
		o.ManagedFields = nil
		if !annotations.IsDecided(o.Annotations) || hasFinalizer(o) {
			return o, nil
		}
		o.Spec = v1.TaskRunSpec{}
		o.Status = v1.TaskRunStatus{
			Status: slimStatus(o.Status.Status),
			TaskRunStatusFields: v1.TaskRunStatusFields{
				StartTime:      o.Status.StartTime,
				CompletionTime: o.Status.CompletionTime,
			},
		}
		return o, nil
	case *v1.PipelineRun:
		o.ManagedFields = nil
		if !annotations.IsDecided(o.Annotations) || lifecycle.HasFinalizer(o, annotations.FinalizerPipelineRun) {
			return o, nil
		}
		o.Spec = v1.PipelineRunSpec{}
		o.Status = v1.PipelineRunStatus{
			Status: slimStatus(o.Status.Status),
			PipelineRunStatusFields: v1.PipelineRunStatusFields{
				StartTime:      o.Status.StartTime,
				CompletionTime: o.Status.CompletionTime,
			},
		}
		return o, nil
	case cache.DeletedFinalStateUnknown:
		return o, nil
	default:
		return obj, nil
	}
}

// slimStatus keeps the Succeeded condition (IsDone reads it) and the
// observed generation.
func slimStatus(s duckv1.Status) duckv1.Status {
	out := duckv1.Status{ObservedGeneration: s.ObservedGeneration}
	if c := s.GetCondition(apis.ConditionSucceeded); c != nil {
		out.Conditions = duckv1.Conditions{*c}
	}
	return out
}

// SetSlimTransform installs Slim on inf; it must run before the informer
// starts (in the controller constructors).
func SetSlimTransform(inf cache.SharedIndexInformer) error {
	if err := inf.SetTransform(Slim); err != nil {
		return fmt.Errorf("installing the informer transform: %w", err)
	}
	return nil
}

package kubetest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// ChildTaskRun returns a TaskRun for pipelineTask of pr, named, labeled and
// owned the way Tekton's PipelineRun reconciler creates it, with spec as its
// inline TaskSpec. Create it, then finish it with FinishTaskRun.
func ChildTaskRun(pr *v1.PipelineRun, pipelineTask string, spec *v1.TaskSpec) *v1.TaskRun {
	labels := map[string]string{
		pipeline.PipelineRunLabelKey:    pr.Name,
		pipeline.PipelineRunUIDLabelKey: string(pr.UID),
		pipeline.PipelineTaskLabelKey:   pipelineTask,
		pipeline.MemberOfLabelKey:       v1.PipelineTasks,
	}
	if pr.Spec.PipelineRef != nil && pr.Spec.PipelineRef.Name != "" {
		labels[pipeline.PipelineLabelKey] = pr.Spec.PipelineRef.Name
	}
	isController := true
	return &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{
			Name:      pr.Name + "-" + pipelineTask,
			Namespace: pr.Namespace,
			Labels:    labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1.SchemeGroupVersion.String(), Kind: pipeline.PipelineRunControllerName,
				Name: pr.Name, UID: pr.UID, Controller: &isController, BlockOwnerDeletion: &isController,
			}},
		},
		Spec: v1.TaskRunSpec{TaskSpec: spec, ServiceAccountName: pr.Spec.TaskRunTemplate.ServiceAccountName},
	}
}

// PipelineFinishOptions describe how a PipelineRun finished.
type PipelineFinishOptions struct {
	// TaskRuns are the run's finished child TaskRuns; each becomes a
	// status.childReferences entry for the pipeline task in its
	// tekton.dev/pipelineTask label. Any failed one fails the PipelineRun.
	TaskRuns []*v1.TaskRun
	// Results are the PipelineRun's results.
	Results []v1.PipelineRunResult
	// PipelineSpec is copied into status.pipelineSpec. Default: the inline
	// spec.pipelineSpec; required when the run references a Pipeline.
	PipelineSpec *v1.PipelineSpec
	// Start is the run's start time; default: the earliest child start, else
	// one second before now.
	Start time.Time
	// SkippedTasks are the pipeline tasks Tekton skipped
	// (status.skippedTasks), with its reasons and resolved when expressions.
	SkippedTasks []v1.SkippedTask
}

// FinishPipelineRun writes the status Tekton writes for a finished
// PipelineRun through the status subresource (a merge patch, like
// FinishTaskRun) and returns the updated PipelineRun.
func FinishPipelineRun(ctx context.Context, client versioned.Interface, pr *v1.PipelineRun, o PipelineFinishOptions) (*v1.PipelineRun, error) {
	status, err := FinishedPipelineStatus(pr, o)
	if err != nil {
		return nil, err
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, err
	}
	out, err := client.TektonV1().PipelineRuns(pr.Namespace).Patch(ctx, pr.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "tekton-pipelines-controller"}, "status")
	if err != nil {
		return nil, fmt.Errorf("finishing PipelineRun %s/%s: %w", pr.Namespace, pr.Name, err)
	}
	return out, nil
}

// FinishedPipelineStatus is the status FinishPipelineRun writes.
func FinishedPipelineStatus(pr *v1.PipelineRun, o PipelineFinishOptions) (*v1.PipelineRunStatus, error) {
	spec := o.PipelineSpec
	if spec == nil {
		spec = pr.Spec.PipelineSpec
	}
	if spec == nil {
		return nil, fmt.Errorf("PipelineRun %s/%s references a Pipeline: set PipelineFinishOptions.PipelineSpec", pr.Namespace, pr.Name)
	}
	start, end := o.Start, time.Time{}
	failed := 0
	children := make([]v1.ChildStatusReference, len(o.TaskRuns))
	for i, tr := range o.TaskRuns {
		if !tr.IsDone() {
			return nil, fmt.Errorf("TaskRun %s is not finished: FinishTaskRun it first", tr.Name)
		}
		if !tr.IsSuccessful() {
			failed++
		}
		if st := tr.Status.StartTime; o.Start.IsZero() && st != nil && (start.IsZero() || st.Time.Before(start)) {
			start = st.Time
		}
		if ct := tr.Status.CompletionTime; ct != nil && ct.Time.After(end) {
			end = ct.Time
		}
		task := tr.Labels[pipeline.PipelineTaskLabelKey]
		if task == "" {
			task = tr.Name
		}
		children[i] = v1.ChildStatusReference{
			TypeMeta:         runtime.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: pipeline.TaskRunControllerName},
			Name:             tr.Name,
			PipelineTaskName: task,
		}
	}
	if start.IsZero() {
		start = time.Now().Add(-time.Second)
	}
	start = start.Truncate(time.Second)
	if end.Before(start) {
		end = start.Add(time.Second)
	}
	end = end.Truncate(time.Second)
	cond := apis.Condition{
		Type:   apis.ConditionSucceeded,
		Status: corev1.ConditionTrue,
		Reason: v1.PipelineRunReasonSuccessful.String(),
		// Tekton says Completed when a task was skipped.
		Message: fmt.Sprintf("Tasks Completed: %d (Failed: %d, Cancelled 0), Skipped: %d",
			len(o.TaskRuns), failed, len(o.SkippedTasks)),
		LastTransitionTime: apis.VolatileTime{Inner: metav1.NewTime(end)},
	}
	if len(o.SkippedTasks) > 0 {
		cond.Reason = v1.PipelineRunReasonCompleted.String()
	}
	if failed > 0 {
		cond.Status, cond.Reason = corev1.ConditionFalse, v1.PipelineRunReasonFailed.String()
	}
	startTime, completionTime := metav1.NewTime(start), metav1.NewTime(end)
	return &v1.PipelineRunStatus{
		Status: duckv1.Status{ObservedGeneration: pr.Generation, Conditions: duckv1.Conditions{cond}},
		PipelineRunStatusFields: v1.PipelineRunStatusFields{
			StartTime:       &startTime,
			CompletionTime:  &completionTime,
			Results:         o.Results,
			PipelineSpec:    spec,
			ChildReferences: children,
			SkippedTasks:    o.SkippedTasks,
		},
	}, nil
}

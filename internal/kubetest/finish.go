package kubetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// FinishedStep is the outcome of one step, as Tekton reports it in
// status.steps from the step container's terminated state.
type FinishedStep struct {
	// Name is the step's name in the TaskSpec.
	Name string
	// ImageID is the image reference with digest the step ran, e.g.
	// "ghcr.io/org/app@sha256:…". Default: the spec step's image if it has a
	// digest, else that image with a digest derived from its name.
	ImageID string
	// ExitCode is the step container's exit code; non-zero fails the run.
	ExitCode int32
	// Start and End default to consecutive one-second slots.
	Start, End time.Time
	// Results are the step's own results (Tekton step results).
	Results []v1.TaskRunStepResult
	// Inputs and Outputs are Tekton step artifacts.
	Inputs, Outputs []v1.TaskRunStepArtifact
}

// FinishOptions describe how a TaskRun finished. The zero value finishes every
// step of the TaskSpec successfully with no results.
type FinishOptions struct {
	// Steps default to one successful step per step of the TaskSpec.
	Steps []FinishedStep
	// Results are the TaskRun's results (status.results).
	Results []v1.TaskRunResult
	// Artifacts are the TaskRun-level artifacts (status.artifacts).
	Artifacts *v1.Artifacts
	// TaskSpec is copied into status.taskSpec, as Tekton does after resolving
	// the Task. Default: the TaskRun's inline spec.taskSpec; required when the
	// TaskRun references a Task by name.
	TaskSpec *v1.TaskSpec
	// PodName defaults to "<taskrun name>-pod".
	PodName string
	// Start is the run's start time; default: long enough ago for the steps.
	Start time.Time
}

// FinishTaskRun writes the status Tekton's controller writes for a finished
// TaskRun (steps with containers, image IDs, exit codes and times, results,
// status.taskSpec, completionTime and Succeeded=True, or False with reason
// Failed when a step exited non-zero) through the status subresource and
// returns the updated TaskRun. It uses a merge patch without resourceVersion,
// so it does not conflict with a controller updating the TaskRun meanwhile.
//
// The CRDs are structural: fields outside Tekton's v1 schema would be pruned,
// which is why this builds the status from Tekton's own types.
func FinishTaskRun(ctx context.Context, client versioned.Interface, tr *v1.TaskRun, o FinishOptions) (*v1.TaskRun, error) {
	status, err := FinishedStatus(tr, o)
	if err != nil {
		return nil, err
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, err
	}
	out, err := client.TektonV1().TaskRuns(tr.Namespace).Patch(ctx, tr.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "tekton-pipelines-controller"}, "status")
	if err != nil {
		return nil, fmt.Errorf("finishing TaskRun %s/%s: %w", tr.Namespace, tr.Name, err)
	}
	return out, nil
}

// FinishedStatus is the status FinishTaskRun writes, for tests that want to
// compare with it or write it some other way.
func FinishedStatus(tr *v1.TaskRun, o FinishOptions) (*v1.TaskRunStatus, error) {
	spec := o.TaskSpec
	if spec == nil {
		spec = tr.Spec.TaskSpec
	}
	if spec == nil {
		return nil, fmt.Errorf("TaskRun %s/%s references a Task: set FinishOptions.TaskSpec", tr.Namespace, tr.Name)
	}
	steps := o.Steps
	if steps == nil {
		for _, s := range spec.Steps {
			steps = append(steps, FinishedStep{Name: s.Name})
		}
	}
	if len(steps) == 0 {
		return nil, errors.New("a finished TaskRun needs at least one step")
	}
	images := map[string]string{}
	for i, s := range spec.Steps {
		images[stepName(s.Name, i)] = s.Image
	}
	start := o.Start
	if start.IsZero() {
		start = time.Now().Add(-time.Duration(len(steps)+1) * time.Second)
	}
	// The API keeps times to the second; truncate so what a test sends is
	// what it reads back.
	start = start.Truncate(time.Second)
	end := start
	failure := "" // Tekton's message for the first failed step
	states := make([]v1.StepState, len(steps))
	for i, s := range steps {
		name := stepName(s.Name, i)
		stepStart, stepEnd := s.Start, s.End
		if stepStart.IsZero() {
			stepStart = end
		}
		if stepEnd.IsZero() {
			stepEnd = stepStart.Add(time.Second)
		}
		stepStart, stepEnd = stepStart.Truncate(time.Second), stepEnd.Truncate(time.Second)
		if stepEnd.After(end) {
			end = stepEnd
		}
		reason := "Completed"
		if s.ExitCode != 0 {
			reason = "Error"
			if failure == "" {
				failure = fmt.Sprintf("%q exited with code %d", "step-"+name, s.ExitCode)
			}
		}
		imageID := s.ImageID
		if imageID == "" {
			imageID = imageWithDigest(images[name])
		}
		states[i] = v1.StepState{
			ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode:   s.ExitCode,
				Reason:     reason,
				StartedAt:  metav1.NewTime(stepStart),
				FinishedAt: metav1.NewTime(stepEnd),
			}},
			Name:              name,
			Container:         "step-" + name,
			ImageID:           imageID,
			Results:           s.Results,
			TerminationReason: reason,
			Inputs:            s.Inputs,
			Outputs:           s.Outputs,
		}
	}
	cond := apis.Condition{
		Type:               apis.ConditionSucceeded,
		Status:             corev1.ConditionTrue,
		Reason:             v1.TaskRunReasonSuccessful.String(),
		Message:            "All Steps have completed executing",
		LastTransitionTime: apis.VolatileTime{Inner: metav1.NewTime(end)},
	}
	if failure != "" {
		cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, v1.TaskRunReasonFailed.String(), failure
	}
	podName := o.PodName
	if podName == "" {
		podName = tr.Name + "-pod"
	}
	startTime, completionTime := metav1.NewTime(start), metav1.NewTime(end)
	return &v1.TaskRunStatus{
		Status: duckv1.Status{
			ObservedGeneration: tr.Generation,
			Conditions:         duckv1.Conditions{cond},
		},
		TaskRunStatusFields: v1.TaskRunStatusFields{
			PodName:        podName,
			StartTime:      &startTime,
			CompletionTime: &completionTime,
			Steps:          states,
			Results:        o.Results,
			Artifacts:      o.Artifacts,
			TaskSpec:       spec,
		},
	}, nil
}

// stepName is the name Tekton gives the i-th step: its own, or "unnamed-i".
func stepName(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("unnamed-%d", i)
	}
	return name
}

// imageWithDigest returns image if it is pinned by digest, else image with a
// sha256 digest derived from its name (stable, so tests can predict it).
func imageWithDigest(image string) string {
	if image == "" {
		image = "registry.invalid/unknown"
	}
	if strings.Contains(image, "@sha256:") {
		return image
	}
	sum := sha256.Sum256([]byte(image))
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i] // drop the tag
	}
	return image + "@sha256:" + hex.EncodeToString(sum[:])
}

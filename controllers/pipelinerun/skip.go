package pipelinerun

import (
	"context"
	"fmt"
	"slices"
	"sort"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// skipRecords signs a skip record (attest.BySkip) for every step of every
// task in status.skippedTasks that Tekton skipped because its when
// expressions were false, a parent was skipped or results it needs were
// missing — the reasons a layout can excuse. The steps are those of the
// task's spec in status.pipelineSpec (inline) or of the Task its taskRef
// names in the run's namespace; when expressions as the Pipeline writes
// them (writtenWhen: before parameter substitution) and as Tekton resolved
// them (skippedTasks[].whenExpressions). The cascade parent is derived as
// Tekton's reconciler decides it: the first dependency skipped for another
// reason than its when expressions, or the first task whose results it
// uses that was skipped. A skipped task whose steps cannot be named (a
// Task from a remote resolver) gets no record and is logged: its run then
// does not verify, which is the safe side. A retry reuses the records an
// earlier attempt stored (prev).
func (r *Kind) skipRecords(ctx context.Context, pr *v1.PipelineRun, rec *run.Record, signer signing.Signer, prev seal.Previous) ([]store.Entry, error) {
	spec := pr.Status.PipelineSpec
	if spec == nil || len(pr.Status.SkippedTasks) == 0 {
		return nil, nil
	}
	skipped := map[string]v1.SkippingReason{}
	for _, st := range pr.Status.SkippedTasks {
		skipped[st.Name] = st.Reason
	}
	deps := v1.PipelineTaskList(spec.Tasks).Deps()
	at := rec.FinishedAt
	var out []store.Entry
	for _, st := range pr.Status.SkippedTasks {
		pt := findTask(spec, st.Name)
		if pt == nil {
			continue
		}
		skip := &run.Skip{Reason: string(st.Reason)}
		switch st.Reason {
		case v1.WhenExpressionsSkip:
			// Tekton does not record which CEL expression was false: no
			// record then (WhenSkip is nil), so the run does not verify.
			skip = tekton.WhenSkip(r.writtenWhen(ctx, pr, pt), st.WhenExpressions, nil)
		case v1.ParentTasksSkip:
			d := slices.Clone(deps[st.Name])
			sort.Strings(d)
			for _, p := range d {
				if reason, ok := skipped[p]; ok && reason != v1.WhenExpressionsSkip {
					skip.Parent = p
					break
				}
			}
		case v1.MissingResultsSkip:
			for _, ref := range v1.PipelineTaskResultRefs(pt) {
				if _, ok := skipped[ref.PipelineTask]; ok {
					skip.Parent = ref.PipelineTask
					break
				}
			}
		default:
			continue // the run stopped, timed out or was cancelled: nothing to excuse
		}
		if skip == nil || (st.Reason != v1.WhenExpressionsSkip && skip.Parent == "") {
			logging.FromContext(ctx).Warnw("no skip record: the skip cannot be traced to its cause", "task", st.Name, "reason", st.Reason)
			continue
		}
		steps, err := r.taskSteps(ctx, pr.Namespace, pt)
		if err != nil {
			logging.FromContext(ctx).Warnw("no skip record: the skipped task's steps cannot be named", "task", st.Name, "error", err)
			continue
		}
		for i, s := range steps {
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("unnamed-%d", i)
			}
			e, err := seal.Link(ctx, rec, run.Step{Name: run.StepName(pt.Name, name), StartedAt: at, FinishedAt: at, Skip: skip}, signer, prev)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// findTask returns the pipeline task (DAG or finally) called name.
func findTask(spec *v1.PipelineSpec, name string) *v1.PipelineTask {
	for _, list := range [][]v1.PipelineTask{spec.Tasks, spec.Finally} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// writtenWhen returns pt's when expressions as the Pipeline writes them:
// from the PipelineRun's inline pipelineSpec, else from the Pipeline its
// pipelineRef names in the run's namespace. Tekton's status.pipelineSpec
// holds them with the run's parameters already substituted ("no" in
// ["yes"] for "$(params.deploy)" in ["yes"]), which no layout generated
// from the Pipeline has; it is the fallback when the Pipeline cannot be
// read (a resolver, or it is gone), and the run then does not verify —
// the safe side. A Pipeline edited between the run and its signing gives
// its new expressions, refused likewise unless they are the layout's.
func (r *Kind) writtenWhen(ctx context.Context, pr *v1.PipelineRun, pt *v1.PipelineTask) v1.WhenExpressions {
	spec := pr.Spec.PipelineSpec
	if spec == nil {
		if ref := pr.Spec.PipelineRef; ref != nil && ref.Resolver == "" && ref.Name != "" && r.Tekton != nil {
			p, err := r.Tekton.TektonV1().Pipelines(pr.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				logging.FromContext(ctx).Warnw("when expressions from status.pipelineSpec (substituted): the Pipeline cannot be read", "pipeline", ref.Name, "error", err)
				return pt.When
			}
			spec = &p.Spec
		}
	}
	if spec != nil {
		if w := findTask(spec, pt.Name); w != nil {
			return w.When
		}
	}
	return pt.When
}

// taskSteps returns the steps of a pipeline task that never ran: its
// inline spec, or the namespaced Task its taskRef names.
func (r *Kind) taskSteps(ctx context.Context, namespace string, pt *v1.PipelineTask) ([]v1.Step, error) {
	switch {
	case pt.TaskSpec != nil:
		return pt.TaskSpec.Steps, nil
	case pt.TaskRef != nil && pt.TaskRef.Resolver == "" && pt.TaskRef.Name != "" && (pt.TaskRef.Kind == "" || pt.TaskRef.Kind == v1.NamespacedTaskKind):
		t, err := r.Tekton.TektonV1().Tasks(namespace).Get(ctx, pt.TaskRef.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return t.Spec.Steps, nil
	}
	return nil, fmt.Errorf("pipeline task %s: its Task comes from a resolver or is not a namespaced Task", pt.Name)
}

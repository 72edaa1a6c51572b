package localrun

import (
	"context"
	"errors"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// taskFailed reports whether err is a task's failure, after which Tekton
// still runs the finally tasks (a step that failed or timed out, a result
// that could not be read), rather than input the run cannot go on with.
func taskFailed(err error) bool {
	return errors.Is(err, ErrStepFailed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrResult)
}

// stoppingSkip records a DAG task that never started because another task
// failed: Tekton's "PipelineRun was stopping" skip.
func (r *runner) stoppingSkip(name string) {
	r.status[name] = taskStatus{skipped: true, reason: v1.StoppingSkip}
	r.state = append(r.state, &prresources.ResolvedPipelineTask{PipelineTask: r.pipelineTask(name)})
	r.rec.Tasks = append(r.rec.Tasks, run.Task{PipelineTask: name, TaskRef: r.spec.TaskRefs[name], Skipped: true, SkipReason: string(v1.StoppingSkip)})
	r.out.printf("--- %s skipped: %s\n", name, v1.StoppingSkip)
}

// facts is the run's state as Tekton's PipelineRun reconciler holds it, so
// that its own code answers $(tasks.status), $(tasks.<t>.status),
// $(tasks.<t>.reason) and which finally tasks it skips. state holds every
// DAG task (run, failed or skipped) and the finally tasks so far.
func (r *runner) facts(state prresources.PipelineRunState) (*prresources.PipelineRunFacts, error) {
	tasks := v1.PipelineTaskList(r.ps.Tasks)
	d, err := dag.Build(tasks, tasks.Deps())
	if err != nil {
		return nil, invalid("pipeline %s: %v", r.spec.Pipeline.Name, err)
	}
	df, err := dag.Build(v1.PipelineTaskList(r.ps.Finally), map[string][]string{})
	if err != nil {
		return nil, invalid("pipeline %s: finally: %v", r.spec.Pipeline.Name, err)
	}
	return &prresources.PipelineRunFacts{State: state, TasksGraph: d, FinalTasksGraph: df}, nil
}

// runFinally runs the finally tasks once every DAG task is done, whatever
// their outcome, in the steps of Tekton's reconciler: the execution status
// of the DAG tasks is substituted (ApplyPipelineTaskStateContext with
// GetPipelineTaskStatus), then each finally task's result references are
// resolved (a reference Tekton cannot resolve skips the task), its when
// expressions evaluated (IsFinallySkipped), previous results propagated,
// and the task run. Every finally task runs even when another fails; the
// first failure is returned.
func (r *runner) runFinally(ctx context.Context) error {
	if len(r.final) == 0 {
		return nil
	}
	var finals prresources.PipelineRunState
	for _, o := range r.final {
		finals = append(finals, &prresources.ResolvedPipelineTask{PipelineTask: r.pipelineTask(o.Name)})
	}
	facts, err := r.facts(append(append(prresources.PipelineRunState(nil), r.state...), finals...))
	if err != nil {
		return err
	}
	prresources.ApplyPipelineTaskStateContext(finals, facts.GetPipelineTaskStatus())
	r.finallyDeadline(time.Now())
	var first error
	for _, rpt := range finals {
		err := r.runFinalTask(ctx, facts, rpt)
		if err != nil {
			r.out.printf("stepseal: finally task %s failed: %v\n", rpt.PipelineTask.Name, err)
		}
		if err != nil && first == nil {
			first = err
		}
		if err != nil && !taskFailed(err) {
			break
		}
	}
	// Finally tasks' results are the pipeline's $(finally.<t>.results.<r>).
	r.state = facts.State
	return first
}

func (r *runner) runFinalTask(ctx context.Context, facts *prresources.PipelineRunFacts, rpt *prresources.ResolvedPipelineTask) error {
	name := rpt.PipelineTask.Name
	skip := func(reason v1.SkippingReason, detail string, record *run.Skip) error {
		r.status[name] = taskStatus{skipped: true, reason: reason}
		r.rec.Tasks = append(r.rec.Tasks, run.Task{PipelineTask: name, TaskRef: r.spec.TaskRefs[name], Skipped: true, SkipReason: string(reason) + detail})
		r.out.printf("--- %s skipped: %s%s\n", name, reason, detail)
		return r.skipRecord(ctx, rpt.PipelineTask, record)
	}
	if !r.pipelineDeadline.IsZero() && !time.Now().Before(r.pipelineDeadline) {
		return skip(v1.PipelineTimedOutSkip, "", nil)
	}
	if !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		return skip(v1.FinallyTimedOutSkip, "", nil)
	}
	refs, _, err := prresources.ResolveResultRef(facts.State, rpt)
	if err != nil {
		// A skip record only when the missing results are a skipped
		// task's: a failed task's fail the run anyway.
		var record *run.Skip
		for _, ref := range v1.PipelineTaskResultRefs(rpt.PipelineTask) {
			if r.status[ref.PipelineTask].skipped {
				record = &run.Skip{Reason: string(v1.MissingResultsSkip), Parent: ref.PipelineTask}
				break
			}
		}
		return skip(v1.MissingResultsSkip, " ("+oneLine(err.Error())+")", record)
	}
	prresources.ApplyTaskResults(prresources.PipelineRunState{rpt}, refs)
	for _, w := range rpt.PipelineTask.When {
		for _, v := range append([]string{w.Input}, w.Values...) {
			if ref := tektonVar.FindString(v); ref != "" {
				return invalid("pipeline task %s: when expression: cannot resolve %s", name, ref)
			}
		}
	}
	if err := rpt.EvaluateCEL(); err != nil {
		return invalid("pipeline task %s: when expression: CEL: %v", name, err)
	}
	if s := rpt.IsFinallySkipped(facts); s.IsSkipped {
		detail := ""
		var record *run.Skip
		if s.SkippingReason == v1.WhenExpressionsSkip {
			detail = " (" + describeWhen(rpt.PipelineTask.When) + ")"
			record = tekton.WhenSkip(r.writtenWhen(name), rpt.PipelineTask.When, rpt.EvaluatedCEL)
		}
		return skip(s.SkippingReason, detail, record)
	}
	pt := rpt.PipelineTask
	rpt.ResolvedTask = &trresources.ResolvedTask{TaskSpec: r.taskSpec(pt)}
	prresources.PropagateResults(rpt, facts.State)
	plan, results, err := r.attempts(ctx, pt, rpt.ResolvedTask.TaskSpec)
	if plan == nil {
		return err
	}
	rpt.TaskRunNames = []string{plan.tr.Name}
	rpt.TaskRuns = []*v1.TaskRun{plan.tr}
	plan.tr.Status.Results = results
	setCondition(plan.tr, err)
	if err != nil {
		r.status[name] = taskStatus{}
		return err
	}
	r.status[name] = taskStatus{}
	return nil
}

// finallyDeadline bounds the finally tasks, which start at start, by
// timeouts.pipeline and timeouts.finally (timeouts.tasks no longer applies).
func (r *runner) finallyDeadline(start time.Time) {
	r.deadline, r.runTimeout = r.pipelineDeadline, ""
	if !r.deadline.IsZero() {
		r.runTimeout = "timeouts.pipeline " + r.spec.Run.Timeouts.Pipeline.Duration.String()
	}
	if r.spec.Run == nil {
		return
	}
	if f := r.spec.Run.Timeouts.Finally; f != nil && f.Duration > 0 {
		if d := start.Add(f.Duration); r.deadline.IsZero() || d.Before(r.deadline) {
			r.deadline, r.runTimeout = d, "timeouts.finally "+f.Duration.String()
		}
	}
}

// taskStatusMap is the execution status of every pipeline task, DAG and
// finally, as Tekton computes it for pipeline results.
func (r *runner) taskStatusMap() (map[string]string, error) {
	facts, err := r.facts(r.state)
	if err != nil {
		return nil, err
	}
	out := facts.GetPipelineTaskStatus()
	for k, v := range facts.GetPipelineFinalTaskStatus() {
		out[k] = v
	}
	return out, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// setCondition gives a TaskRun the Succeeded condition Tekton's status would
// have after err (nil: succeeded; a timeout; any other failure).
func setCondition(tr *v1.TaskRun, err error) {
	c := apis.Condition{Type: apis.ConditionSucceeded, Status: "True", Reason: v1.TaskRunReasonSuccessful.String()}
	if err != nil {
		c.Status, c.Reason = "False", v1.TaskRunReasonFailed.String()
		if errors.Is(err, ErrTimeout) {
			c.Reason = v1.TaskRunReasonTimedOut.String()
		}
	}
	tr.Status.Conditions = duckv1.Conditions{c}
}

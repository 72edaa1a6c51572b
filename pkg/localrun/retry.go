package localrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
)

// attempts plans and runs a pipeline task (ts is its TaskSpec before
// task-level substitution) up to 1 + pt.Retries times, as Tekton's
// PipelineRun reconciler retries a failed TaskRun: a step that failed or
// timed out (not with onError: continue) or a result that could not be
// read fails the attempt, and the next starts the task's steps afresh in
// the same workspaces (Tekton does not reset them) with fresh results.
// $(context.task.retry-count) is the number of earlier attempts, as
// Tekton counts the TaskRun's retriesStatus. The run's own deadline
// (timeouts.pipeline, tasks, finally) is not retried: Tekton cancels the
// TaskRun then.
//
// Each failed attempt's links are renamed to seal.AttemptLinkName, so the
// last attempt's links keep their names and are what the layout verifies;
// its record entry gives way to the next attempt's, which says how many
// attempts there were.
func (r *runner) attempts(ctx context.Context, pt *v1.PipelineTask, ts *v1.TaskSpec) (*taskPlan, []v1.TaskRunResult, error) {
	var retries []v1.TaskRunStatus
	for attempt := 1; ; attempt++ {
		plan, err := r.planTask(ctx, pt, ts.DeepCopy(), true, retries)
		if err != nil {
			return nil, nil, err
		}
		before := len(r.rec.Tasks)
		results, err := r.runTask(ctx, plan)
		recorded := len(r.rec.Tasks) > before
		if recorded {
			r.rec.Tasks[len(r.rec.Tasks)-1].Attempts = attempt
		}
		if err == nil || attempt > pt.Retries || !taskFailed(err) || ctx.Err() != nil || r.deadlineExpired() {
			if attempt > 1 {
				r.out.printf("--- %s: attempt %d of %d %s\n", pt.Name, attempt, pt.Retries+1, outcome(err))
			}
			return plan, results, err
		}
		if recorded {
			if err := r.keepAttempt(r.rec.Tasks[len(r.rec.Tasks)-1].Steps, attempt); err != nil {
				return plan, nil, err
			}
			r.rec.Tasks = r.rec.Tasks[:len(r.rec.Tasks)-1]
		}
		setCondition(plan.tr, err)
		retries = append(retries, *plan.tr.Status.DeepCopy())
		r.out.printf("--- %s: attempt %d of %d failed (%v); retrying (retries: %d)\n", pt.Name, attempt, pt.Retries+1, err, pt.Retries)
	}
}

func outcome(err error) string {
	if err == nil {
		return "succeeded"
	}
	return "failed"
}

// deadlineExpired reports whether the run's deadline for its tasks passed.
func (r *runner) deadlineExpired() bool {
	return !r.deadline.IsZero() && !time.Now().Before(r.deadline)
}

// keepAttempt renames the links of a failed attempt's steps to
// seal.AttemptLinkName: they stay in LinkDir, signed, apart from the
// links the layout verifies.
func (r *runner) keepAttempt(steps []run.Step, attempt int) error {
	if r.opts.LinkDir == "" {
		return nil
	}
	for _, st := range steps {
		for _, s := range r.signers[st.Name] {
			id, err := s.KeyID()
			if err != nil {
				return fmt.Errorf("step %s: %w", st.Name, err)
			}
			from := filepath.Join(r.opts.LinkDir, seal.LinkName(st.Name, id))
			to := filepath.Join(r.opts.LinkDir, seal.AttemptLinkName(st.Name, id, attempt))
			if err := os.Rename(from, to); err != nil {
				return fmt.Errorf("step %s: keeping the link of attempt %d: %w", st.Name, attempt, err)
			}
		}
	}
	return nil
}

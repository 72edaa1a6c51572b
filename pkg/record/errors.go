package record

import (
	"fmt"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Errors callers branch on with errors.Is; each also matches its reason in
// stepseal's shared vocabulary (pkg/reject).
var (
	// ErrStepFailed: a step exited non-zero or could not be started; the
	// error is a *StepError (reject.ErrStepFailed).
	ErrStepFailed = reject.Sentinel(reject.ErrStepFailed, "step failed")
	// ErrTimeout: a step or task timeout expired; the error is a *StepError
	// (reject.ErrStepFailed: a timeout fails a step, as in Tekton).
	ErrTimeout = reject.Sentinel(reject.ErrStepFailed, "timed out")
)

// StepError is returned when a step fails (a recorded command here, a
// Pipeline step in pkg/localrun). Its link was still written (exit code in
// the byproducts) and the step is returned with it.
type StepError struct {
	// Step is the in-toto step name (pkg/localrun: "<pipelineTask>.<step>").
	Step string
	// ExitCode is the process's exit status; 128+n when killed by signal n,
	// -1 when it did not start.
	ExitCode int
	// Timeout is set when a step or task timeout killed the step.
	Timeout time.Duration
	// Err is the underlying cause, if any (start failure, timeout).
	Err error
}

func (e *StepError) Error() string {
	switch {
	case e.Timeout > 0:
		return fmt.Sprintf("step %s timed out after %s (exit code %d)", e.Step, e.Timeout, e.ExitCode)
	case e.Err != nil:
		return fmt.Sprintf("step %s failed: %v (exit code %d)", e.Step, e.Err, e.ExitCode)
	}
	return fmt.Sprintf("step %s failed with exit code %d", e.Step, e.ExitCode)
}

// Is makes errors.Is(err, ErrStepFailed) hold for every StepError,
// errors.Is(err, ErrTimeout) for the timed-out ones, and each their reason,
// reject.ErrStepFailed.
func (e *StepError) Is(target error) bool {
	return target == ErrStepFailed || (target == ErrTimeout && e.Timeout > 0) || reject.Matches(reject.ErrStepFailed, target)
}

func (e *StepError) Unwrap() error { return e.Err }

package localrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tknpod "github.com/tektoncd/pipeline/pkg/pod"

	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/run"
)

// runTask runs the steps of a planned task in order and returns its results.
func (r *runner) runTask(ctx context.Context, plan *taskPlan) ([]v1.TaskRunResult, error) {
	name := plan.pt.Name
	taskCtx := ctx
	var taskTimeout time.Duration
	if plan.pt.Timeout != nil && plan.pt.Timeout.Duration > 0 {
		taskTimeout = plan.pt.Timeout.Duration
		var cancel context.CancelFunc
		taskCtx, cancel = context.WithTimeout(ctx, taskTimeout)
		defer cancel()
	}
	if !r.deadline.IsZero() {
		left := time.Until(r.deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%w: pipeline task %s: the run's %s expired before it started", ErrTimeout, name, r.runTimeout)
		}
		if taskTimeout == 0 || left < taskTimeout {
			// The run's deadline comes first: a step it kills reports the
			// time it had left.
			taskTimeout = left.Round(time.Millisecond)
			var cancel context.CancelFunc
			taskCtx, cancel = context.WithDeadline(ctx, r.deadline)
			defer cancel()
		}
	}
	for _, b := range plan.bindings {
		if err := os.MkdirAll(b.dir, 0o755); err != nil {
			return nil, invalid("pipeline task %s: workspace %s: %v", name, b.task, err)
		}
	}
	// Results and scripts belong to this TaskRun: start them empty even if
	// WorkDir is reused with the same run ID.
	// (A scripts directory that cannot be removed makes writeScript fail,
	// naming the step.)
	os.RemoveAll(plan.scriptsDir)
	if err := os.RemoveAll(plan.stepsDir); err != nil {
		return nil, invalid("pipeline task %s: steps directory: %v", name, err)
	}
	if err := os.RemoveAll(plan.resultsDir); err != nil {
		return nil, invalid("pipeline task %s: results directory: %v", name, err)
	}
	if err := os.MkdirAll(plan.resultsDir, 0o755); err != nil {
		return nil, invalid("pipeline task %s: results directory: %v", name, err)
	}
	// Scripts are written before the first step runs, so one that cannot be
	// written fails the task before anything of it executed.
	scripts := make([]string, len(plan.steps))
	for i, st := range plan.steps {
		if st.Script == "" {
			continue
		}
		p, err := writeScript(plan.scriptsDir, i, stepName(st, i), st.Script)
		if err != nil {
			return nil, invalid("pipeline task %s step %s: cannot write script: %v", name, stepName(st, i), err)
		}
		scripts[i] = p
	}
	r.rec.Tasks = append(r.rec.Tasks, run.Task{
		PipelineTask: name,
		TaskRef:      plan.taskRef,
		TaskRun:      plan.tr.Name,
		Params:       paramsMap(plan.pt.Params),
	})
	ti := len(r.rec.Tasks) - 1
	for i, st := range plan.steps {
		sname := run.StepName(name, stepName(st, i))
		if err := os.MkdirAll(stepResultsDir(plan.stepsDir, st, i), 0o755); err != nil {
			return nil, invalid("step %s: step results directory: %v", sname, err)
		}
		st, err := substituteStepResults(st, plan.stepsDir)
		if err != nil {
			return nil, fmt.Errorf("%w: pipeline task %s step %s: step result: %w", ErrResult, name, stepName(st, i), err)
		}
		if len(st.When) > 0 && !st.When.AllowsExecution(nil) {
			r.out.printf("--- %s skipped: %s (%s)\n", sname, v1.WhenExpressionsSkip, describeWhen(st.When))
			continue
		}
		step, err := r.runStep(ctx, taskCtx, taskTimeout, plan, st, scripts[i], sname)
		if step != nil {
			r.rec.Tasks[ti].Steps = append(r.rec.Tasks[ti].Steps, *step)
			// As Tekton's entrypoint: the exit code, for later steps'
			// $(steps.step-<name>.exitCode.path).
			if werr := writeExitCode(plan.stepsDir, tknpod.StepName(st.Name, i), step.ExitCode); werr != nil && err == nil {
				return nil, fmt.Errorf("pipeline task %s step %s: exitCode: %w", name, stepName(st, i), werr)
			}
		}
		var se *StepError
		if errors.As(err, &se) && st.OnError == v1.Continue && !errors.Is(se.Err, ErrTimeout) && ctx.Err() == nil && taskCtx.Err() == nil {
			r.out.printf("    %s: onError: continue, going on\n", sname)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	results, err := readResults(plan)
	if err != nil {
		return nil, err
	}
	if len(results) > 0 {
		r.rec.Tasks[ti].Results = map[string]string{}
		for _, res := range results {
			r.rec.Tasks[ti].Results[res.Name] = paramString(res.Value)
		}
	}
	return results, nil
}

// writeExitCode writes a step's exit code where Tekton's entrypoint
// writes it: <steps>/<step-name>/exitCode, the number without a newline.
func writeExitCode(stepsDir, step string, code int) error {
	dir := filepath.Join(stepsDir, step)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "exitCode"), []byte(strconv.Itoa(code)), 0o644)
}

func writeScript(dir string, i int, name, script string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// Tekton runs a script without a shebang with /bin/sh and set -e.
	if !strings.HasPrefix(script, "#!") {
		script = "#!/bin/sh\nset -e\n" + script
	}
	p := filepath.Join(dir, fmt.Sprintf("%02d-%s", i, name))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return "", err
	}
	return p, f.Close()
}

// runStep hashes the task's workspaces, runs the step, hashes them again,
// signs and writes the step's link. The step is returned whenever it ran.
func (r *runner) runStep(ctx, taskCtx context.Context, taskTimeout time.Duration, plan *taskPlan, st v1.Step, script, sname string) (*run.Step, error) {
	stepCtx := taskCtx
	timeout := taskTimeout
	if st.Timeout != nil && st.Timeout.Duration > 0 {
		var cancel context.CancelFunc
		stepCtx, cancel = context.WithTimeout(taskCtx, st.Timeout.Duration)
		defer cancel()
		timeout = st.Timeout.Duration
	}
	wd, err := r.workingDir(st.WorkingDir)
	if err != nil {
		return nil, invalid("step %s: workingDir: %v", sname, err)
	}
	env := append([]string(nil), r.env...)
	var declared map[string]string
	for _, e := range st.Env {
		if declared == nil {
			declared = map[string]string{}
		}
		declared[e.Name] = e.Value
		env = append(env, e.Name+"="+e.Value)
	}
	argv := append(append([]string(nil), st.Command...), st.Args...)
	if script != "" {
		argv = append([]string{script}, st.Args...)
	}

	materials, err := r.hashBindings(ctx, plan)
	if err != nil {
		return nil, fmt.Errorf("step %s: materials: %w", sname, err)
	}
	resultsBefore, err := readResultFiles(plan.resultsDir)
	if err != nil {
		return nil, fmt.Errorf("step %s: %w", sname, err)
	}
	r.out.printf("==> %s [image %s, not pulled]\n", sname, st.Image)
	outs, err := r.stepOutputs(sname, wd, st)
	if err != nil {
		return nil, invalid("step %s: %v", sname, err)
	}
	start := time.Now().UTC()
	exit, runErr := record.Process(stepCtx, argv, wd, env, outs.stdout, outs.stderr)
	end := time.Now().UTC()
	if err := outs.close(); err != nil && runErr == nil {
		runErr = err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("step %s interrupted: %w", sname, ctx.Err())
	}
	products, err := r.hashBindings(ctx, plan)
	if err != nil {
		return nil, fmt.Errorf("step %s: products: %w", sname, err)
	}
	r.warnReadOnly(sname, plan, materials, products)
	resultsAfter, err := readResultFiles(plan.resultsDir)
	if err != nil {
		return nil, fmt.Errorf("step %s: %w", sname, err)
	}
	// The link records the paths the step would see in a Tekton Pod, not
	// this host's (see taskPlan.podPaths).
	pod := plan.podPaths.Replace
	recordedEnv := map[string]string(nil)
	for k, v := range declared {
		if recordedEnv == nil {
			recordedEnv = map[string]string{}
		}
		recordedEnv[k] = pod(v)
	}
	step := &run.Step{
		Name:       sname,
		Image:      st.Image,
		Command:    podAll(pod, st.Command),
		Args:       podAll(pod, st.Args),
		WorkingDir: r.recordedWorkingDir(pod, wd),
		Env:        recordedEnv,
		Materials:  materials,
		Products:   products,
		ExitCode:   exit,
		StartedAt:  start,
		FinishedAt: end,
		Stdout:     run.DigestSet{"sha256": hex.EncodeToString(outs.stdoutHash.Sum(nil))},
		Stderr:     run.DigestSet{"sha256": hex.EncodeToString(outs.stderrHash.Sum(nil))},
		Results:    changedResults(resultsBefore, resultsAfter),
	}
	// A timeout kills the step; Tekton fails such a step even with
	// onError: continue, and the link says so.
	timedOut := stepCtx.Err() == context.DeadlineExceeded
	step.TimedOut = timedOut
	if st.Script != "" {
		step.Script = pod(st.Script)
		d := sha256.Sum256([]byte(step.Script))
		step.ScriptDigest = hex.EncodeToString(d[:])
	}
	if err := r.writeLinks(ctx, step); err != nil {
		return step, err
	}
	r.out.printf("<== %s exit %d in %s\n", sname, exit, end.Sub(start).Round(time.Millisecond))

	if exit == 0 && runErr == nil && !timedOut {
		return step, nil
	}
	se := &StepError{Step: sname, ExitCode: exit, Err: runErr}
	if timedOut {
		se.Timeout = timeout
		se.Err = ErrTimeout
	}
	return step, se
}

// podAll applies pod to each string of ss.
func podAll(pod func(string) string, ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = pod(s)
	}
	return out
}

// recordedWorkingDir is what a link records of the working directory wd:
// its Pod path when it lies in a workspace, else relative to the default
// working directory (the pipeline's directory, "." itself), else wd as the
// step declared it.
func (r *runner) recordedWorkingDir(pod func(string) string, wd string) string {
	if p := pod(wd); p != wd {
		return p
	}
	if rel, err := filepath.Rel(r.defaultWD, wd); err == nil && filepath.IsLocal(rel) || rel == "." {
		return filepath.ToSlash(rel)
	}
	return wd
}

// workingDir resolves a step's workingDir: relative to DefaultWorkingDir,
// created when it lies under the run's scratch directory (Tekton creates
// working directories under its workspaces), else required to exist.
func (r *runner) workingDir(wd string) (string, error) {
	if wd == "" {
		return r.defaultWD, nil
	}
	if !filepath.IsAbs(wd) {
		wd = filepath.Join(r.defaultWD, wd)
	}
	wd = filepath.Clean(wd)
	if rel, err := filepath.Rel(r.workDir, wd); err == nil && filepath.IsLocal(rel) {
		return wd, os.MkdirAll(wd, 0o755)
	}
	fi, err := os.Stat(wd)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", wd)
	}
	return wd, nil
}

// hashBindings records every file of the task's workspaces.
func (r *runner) hashBindings(ctx context.Context, plan *taskPlan) (run.Artifacts, error) {
	out := run.Artifacts{}
	seen := map[string]bool{}
	for _, b := range plan.bindings {
		if seen[b.dir] {
			continue
		}
		seen[b.dir] = true
		a, err := artifact.Hash(ctx, b.dir, b.prefix, artifact.Options{Exclude: r.opts.Exclude})
		if err != nil {
			return nil, err
		}
		for k, v := range a {
			out[k] = v
		}
	}
	return out, nil
}

// warnReadOnly says when a step changed a workspace its Task declared
// read-only. Tekton would have mounted it read-only; here the change is only
// recorded (its products show it, so layout rules still catch it).
func (r *runner) warnReadOnly(sname string, plan *taskPlan, before, after run.Artifacts) {
	for _, b := range plan.bindings {
		if !b.readOnly {
			continue
		}
		var changed []string
		p := b.prefix + "/"
		for k, v := range after {
			if strings.HasPrefix(k, p) && before[k]["sha256"] != v["sha256"] {
				changed = append(changed, k)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok && strings.HasPrefix(k, p) {
				changed = append(changed, k)
			}
		}
		if len(changed) > 0 {
			sort.Strings(changed)
			r.out.printf("    warning: %s changed read-only workspace %s (Tekton mounts it read-only): %s\n", sname, b.task, strings.Join(changed, ", "))
		}
	}
}

// stepIO is where a step's stdout and stderr go: a digest each, the progress
// output (prefixed) unless quiet, and the stdoutConfig/stderrConfig files.
type stepIO struct {
	stdout, stderr         io.Writer
	stdoutHash, stderrHash hash.Hash
	closers                []io.Closer
}

func (s *stepIO) close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (r *runner) stepOutputs(sname, wd string, st v1.Step) (*stepIO, error) {
	s := &stepIO{stdoutHash: sha256.New(), stderrHash: sha256.New()}
	outW := []io.Writer{s.stdoutHash}
	errW := []io.Writer{s.stderrHash}
	if !r.opts.Quiet {
		lo, le := r.out.lines(sname+" | "), r.out.lines(sname+" ! ")
		outW, errW = append(outW, lo), append(errW, le)
		s.closers = append(s.closers, lo, le)
	}
	for _, c := range []struct {
		cfg *v1.StepOutputConfig
		w   *[]io.Writer
	}{{st.StdoutConfig, &outW}, {st.StderrConfig, &errW}} {
		if c.cfg == nil || c.cfg.Path == "" {
			continue
		}
		p := c.cfg.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(wd, p)
		}
		f, err := os.Create(p)
		if err != nil {
			s.close()
			return nil, err
		}
		*c.w = append(*c.w, f)
		s.closers = append(s.closers, f)
	}
	s.stdout, s.stderr = io.MultiWriter(outW...), io.MultiWriter(errW...)
	return s, nil
}

// readResultFiles reads the results directory through os.Root, so a result
// that is a symlink out of it is refused, each capped at MaxResultSize+1.
func readResultFiles(dir string) (map[string][]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		f, err := root.OpenFile(e.Name(), os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("result %s: %w", e.Name(), err)
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
		}
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(f, MaxResultSize+1))
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("result %s: %w", e.Name(), err)
		}
		out[e.Name()] = b
	}
	return out, nil
}

// taskResultFromStep reads the step result a task result's value names.
// A step result that was not written leaves the task result absent.
func taskResultFromStep(plan *taskPlan, res v1.TaskResult) ([]byte, bool, error) {
	step, result, err := v1.ExtractStepResultName(res.Value.StringVal)
	if err != nil {
		return nil, false, fmt.Errorf("%w: pipeline task %s: result %s: %w", ErrResult, plan.pt.Name, res.Name, err)
	}
	files, err := readResultFiles(filepath.Join(plan.stepsDir, tknpod.StepName(step, 0), "results"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: pipeline task %s: result %s from step %s: %w", ErrResult, plan.pt.Name, res.Name, step, err)
	}
	b, ok := files[result]
	return b, ok, nil
}

func changedResults(before, after map[string][]byte) map[string]string {
	var out map[string]string
	for k, v := range after {
		if b, ok := before[k]; ok && string(b) == string(v) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = string(v)
	}
	return out
}

// readResults reads the Task's declared results after its last step, the
// way Tekton does: a declared result not written is absent; one larger than
// MaxResultSize fails the task; array and object results are JSON.
func readResults(plan *taskPlan) ([]v1.TaskRunResult, error) {
	files, err := readResultFiles(plan.resultsDir)
	if err != nil {
		return nil, fmt.Errorf("%w: pipeline task %s: %w", ErrResult, plan.pt.Name, err)
	}
	var out []v1.TaskRunResult
	for _, res := range plan.ts.Results {
		b, ok := files[res.Name]
		if res.Value != nil && stepResultRef.MatchString(res.Value.StringVal) {
			// value: $(steps.<s>.results.<r>): the step's result, as
			// Tekton's Pod status code copies it into the task result.
			b, ok, err = taskResultFromStep(plan, res)
			if err != nil {
				return nil, err
			}
		}
		if !ok {
			continue
		}
		if len(b) > MaxResultSize {
			return nil, fmt.Errorf("%w: pipeline task %s: result %s is larger than %d bytes", ErrResult, plan.pt.Name, res.Name, MaxResultSize)
		}
		t := res.Type
		if t == "" {
			t = v1.ResultsTypeString
		}
		v := v1.ResultValue{Type: v1.ParamType(t)}
		switch t {
		case v1.ResultsTypeArray:
			err = json.Unmarshal(b, &v.ArrayVal)
		case v1.ResultsTypeObject:
			err = json.Unmarshal(b, &v.ObjectVal)
		default:
			v.StringVal = string(b)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: pipeline task %s: result %s is not a JSON %s: %w", ErrResult, plan.pt.Name, res.Name, t, err)
		}
		out = append(out, v1.TaskRunResult{Name: res.Name, Type: t, Value: v})
	}
	return out, nil
}

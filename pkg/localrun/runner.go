package localrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/container"
	tknpod "github.com/tektoncd/pipeline/pkg/pod"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/reconciler/volumeclaim"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/kmeta"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

type runner struct {
	spec      *tekton.Spec
	opts      Options
	out       *progress
	runID     string
	defaultWD string
	env       []string
	workDir   string
	wsDirs    map[string]string // pipeline workspace -> host directory

	pr     *v1.PipelineRun
	ps     *v1.PipelineSpec // after pipeline-level substitution
	params map[string]string
	order  []v1.PipelineTask
	final  []v1.PipelineTask // finally tasks, in declaration order

	signers map[string][]signing.Signer // by step name
	// commands are the steps' commands as planned before the run (Commands).
	commands map[string][]string

	// deadline ends the run's tasks when the run declares timeouts
	// (timeouts.pipeline, timeouts.tasks; for the finally tasks
	// timeouts.pipeline and timeouts.finally); runTimeout is the timeout
	// that set it, for messages.
	deadline   time.Time
	runTimeout string
	// pipelineDeadline is timeouts.pipeline's alone: what bounds the
	// finally tasks besides timeouts.finally.
	pipelineDeadline time.Time

	rec    *run.Record
	state  prresources.PipelineRunState
	status map[string]taskStatus
}

type taskStatus struct {
	skipped bool
	reason  v1.SkippingReason
}

// binding is one task workspace as a host directory.
type binding struct {
	task, pipeline, subPath string
	dir                     string // host directory
	prefix                  string // artifact URI prefix: pipeline workspace [+ "/" + subPath]
	readOnly                bool
}

// taskPlan is a pipeline task ready to run: fully substituted, validated.
type taskPlan struct {
	pt         *v1.PipelineTask
	taskRef    string
	tr         *v1.TaskRun
	ts         *v1.TaskSpec
	steps      []v1.Step // merged with the stepTemplate
	bindings   []binding
	resultsDir string
	scriptsDir string
	// stepsDir holds a directory per step, as Tekton's /tekton/steps:
	// step-<name>/results/ for its step results, step-<name>/exitCode once
	// the step ended.
	stepsDir string
	// podPaths rewrites this task's host paths (workspace directories,
	// results and scripts) to the paths the step would see in a Tekton
	// Pod, for what its link records: host directories are neither
	// reproducible nor anyone else's business.
	podPaths *strings.Replacer
}

func (r *runner) pipelineTask(name string) *v1.PipelineTask {
	for _, pts := range [][]v1.PipelineTask{r.ps.Tasks, r.ps.Finally} {
		for i := range pts {
			if pts[i].Name == name {
				// $(context.pipelineTask.retries), as Tekton's reconciler
				// substitutes it before it creates the TaskRun.
				pt := prresources.ApplyPipelineTaskContexts(&pts[i], v1.PipelineRunStatus{}, &prresources.PipelineRunFacts{State: r.state})
				// A taskRunSpec's timeout overrides the pipeline task's, as
				// Tekton's reconciler sets the TaskRun's.
				if d := r.spec.Run.TaskRunSpec(name).Timeout; d != nil {
					pt.Timeout = d
				}
				return pt
			}
		}
	}
	return nil
}

// taskSpec is the pipeline task's TaskSpec before task-level substitution:
// the inline spec (pipeline params already propagated into it) or the
// referenced Task's.
func (r *runner) taskSpec(pt *v1.PipelineTask) *v1.TaskSpec {
	if pt.TaskSpec != nil {
		return pt.TaskSpec.TaskSpec.DeepCopy()
	}
	return r.spec.Tasks[pt.Name].DeepCopy()
}

// preflight plans every task with what is known before anything runs, so bad
// input is reported before any step executes and before any link is
// written; references to other tasks' results are checked again later.
func (r *runner) preflight(ctx context.Context) error {
	if r.opts.WorkDir != "" {
		dir, err := filepath.Abs(r.opts.WorkDir)
		if err != nil {
			return err
		}
		r.workDir = dir
	} else {
		r.workDir = filepath.Join(os.TempDir(), "stepseal-run-"+shortID(r.runID)) // placeholder until prepareDirs
	}
	r.wsDirs = map[string]string{}
	for _, b := range r.pr.Spec.Workspaces {
		r.wsDirs[b.Name] = filepath.Join(r.workDir, filepath.FromSlash(r.spec.WorkspaceDir(b.Name)))
	}
	if err := r.validateResultRefs(); err != nil {
		return err
	}
	r.signers = map[string][]signing.Signer{}
	r.commands = map[string][]string{}
	for _, o := range append(append([]v1.PipelineTask(nil), r.order...), r.final...) {
		pt := r.pipelineTask(o.Name)
		if pt.IsMatrixed() {
			return invalid("pipeline task %s: matrix is not supported by the local runner", pt.Name)
		}
		if pt.OnError == v1.PipelineTaskContinue {
			// Tekton would go on after the task failed; the steps after the
			// failed one leave no link a layout could accept.
			return invalid("pipeline task %s: onError: continue on a pipeline task is not supported by the local runner (a failed task's later steps leave no link)", pt.Name)
		}
		plan, err := r.planTask(ctx, pt, r.taskSpec(pt), false, nil)
		if err != nil {
			return err
		}
		for i, st := range plan.steps {
			name := run.StepName(pt.Name, stepName(st, i))
			r.commands[name] = plannedCommand(plan, st)
			if r.opts.Signers == nil {
				continue
			}
			ss, err := r.opts.Signers(name)
			if err != nil {
				return invalid("step %s: signer: %v", name, err)
			}
			if len(ss) == 0 {
				return invalid("step %s: no signer: every step's link must be signed", name)
			}
			r.signers[name] = ss
		}
	}
	return nil
}

// validateResultRefs does what Tekton's reconciler does before the first
// TaskRun: every result a task, finally task or pipeline result refers to
// is declared by the task it names (ValidatePipelineTaskResults,
// ValidatePipelineResults), with their reasons and messages.
func (r *runner) validateResultRefs() error {
	var state prresources.PipelineRunState
	for _, pts := range [][]v1.PipelineTask{r.ps.Tasks, r.ps.Finally} {
		for i := range pts {
			pt := pts[i].DeepCopy()
			state = append(state, &prresources.ResolvedPipelineTask{PipelineTask: pt, ResolvedTask: &trresources.ResolvedTask{TaskSpec: r.taskSpec(pt)}})
		}
	}
	what := "pipeline " + r.spec.Pipeline.Name
	if run := r.spec.Run; run != nil {
		what = fmt.Sprintf("%s: %s %q (pipeline %s)", r.spec.Path, run.Kind, run.Name, r.spec.Pipeline.Name)
	}
	if err := prresources.ValidatePipelineTaskResults(state); err != nil {
		return invalid("%s: %s: %v", what, v1.PipelineRunReasonInvalidTaskResultReference, err)
	}
	if err := prresources.ValidatePipelineResults(r.ps, state); err != nil {
		return invalid("%s: %s: %v", what, v1.PipelineRunReasonInvalidPipelineResultReference, err)
	}
	return nil
}

// stepName is the step's name, or Tekton's "unnamed-<index>" for a step
// without one.
func stepName(st v1.Step, i int) string {
	if st.Name != "" {
		return st.Name
	}
	return fmt.Sprintf("unnamed-%d", i)
}

func (r *runner) prepareDirs() error {
	if r.opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "stepseal-run-")
		if err != nil {
			return err
		}
		r.workDir = dir
		for name := range r.wsDirs {
			r.wsDirs[name] = filepath.Join(dir, filepath.FromSlash(r.spec.WorkspaceDir(name)))
		}
	}
	for _, d := range r.wsDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if r.spec.Run != nil {
		names := make([]string, 0, len(r.spec.Run.Sources))
		for w := range r.spec.Run.Sources {
			names = append(names, w)
		}
		sort.Strings(names)
		for _, w := range names {
			if err := writeSource(r.wsDirs[w], r.spec.Run.Sources[w]); err != nil {
				return invalid("workspace %s: %v", w, err)
			}
		}
	}
	if r.opts.LinkDir != "" {
		if err := os.MkdirAll(r.opts.LinkDir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// taskBinding is the TaskRun workspace binding Tekton's reconciler derives
// from the run's binding of pipeline workspace pw: the same volume source
// (so $(workspaces.<w>.claim) names a persistentVolumeClaim's claim); for a
// volumeClaimTemplate, the persistentVolumeClaim Tekton creates from it,
// named by Tekton's volumeclaim.GeneratePVCNameFromWorkspaceBinding with
// the run as its owner (the PipelineRun, or a TaskRun file's TaskRun tr:
// their UIDs are the run ID's); a Pipeline file's workspace as an emptyDir.
func (r *runner) taskBinding(name, pw, subPath string, tr *v1.TaskRun) v1.WorkspaceBinding {
	b, ok := r.spec.Run.Binding(pw)
	if !ok {
		return emptyDirBinding(name, subPath)
	}
	if b.VolumeClaimTemplate != nil {
		owner := *kmeta.NewControllerRef(r.pr)
		if r.spec.Run.Kind == "TaskRun" {
			owner = *kmeta.NewControllerRef(tr)
		}
		return v1.WorkspaceBinding{Name: name, SubPath: subPath, PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
			ClaimName: volumeclaim.GeneratePVCNameFromWorkspaceBinding(b.VolumeClaimTemplate.Name, b, owner),
		}}
	}
	b = *b.DeepCopy()
	b.Name, b.SubPath = name, subPath
	return b
}

// declared reports whether the Pipeline declares workspace w.
func (r *runner) declared(w string) bool {
	for _, d := range r.ps.Workspaces {
		if d.Name == w {
			return true
		}
	}
	return false
}

// optionalWorkspace reports whether the Pipeline declares w optional.
func (r *runner) optionalWorkspace(w string) bool {
	for _, d := range r.ps.Workspaces {
		if d.Name == w {
			return d.Optional
		}
	}
	return false
}

// writeSource writes the files of a ConfigMap or Secret workspace into dir,
// without write permission, as Kubernetes mounts them read-only.
func writeSource(dir string, files []tekton.File) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode); err != nil { // past the umask
			return err
		}
	}
	return nil
}

// tektonVar matches a Tekton variable reference left after substitution.
// Shell command substitutions like $(date) do not match.
var tektonVar = regexp.MustCompile(`\$\((?:params|results|workspaces|context|tasks|steps|step|credentials|artifacts|inputs|outputs)\b[^)]*\)`)

// planTask validates a pipeline task and applies Tekton's task-level
// substitution the way its taskrun reconciler does (params, context, results,
// workspaces), with host paths for results and workspaces. With final false,
// references to other tasks' results may remain.
func (r *runner) planTask(ctx context.Context, pt *v1.PipelineTask, ts *v1.TaskSpec, final bool, retries []v1.TaskRunStatus) (*taskPlan, error) {
	name := pt.Name
	// $(context.pipelineTask.retries) in the task's params, as Tekton's
	// reconciler substitutes it before it creates the TaskRun.
	pt = prresources.ApplyPipelineTaskContexts(pt, v1.PipelineRunStatus{}, &prresources.PipelineRunFacts{})
	if err := unsupportedTask(name, ts); err != nil {
		return nil, err
	}
	trName := kmeta.ChildName(r.pr.Name, "-"+name) // as Tekton names TaskRuns
	if run := r.spec.Run; run != nil && run.Kind == "TaskRun" {
		// A TaskRun file's one task is the TaskRun itself.
		trName = run.Name
		if run.Generated {
			trName += "-" + shortID(r.runID)
		}
	}
	plan := &taskPlan{
		pt:         pt,
		taskRef:    r.spec.TaskRefs[name],
		resultsDir: filepath.Join(r.workDir, "results", trName),
		scriptsDir: filepath.Join(r.workDir, "scripts", trName),
		stepsDir:   filepath.Join(r.workDir, "steps", trName),
	}
	tr := &v1.TaskRun{}
	tr.Name = trName
	tr.UID = typesUID(r.runID + "-" + name)
	tr.Status.RetriesStatus = retries // $(context.task.retry-count)
	if pt.TaskSpec != nil {
		tr.Spec.TaskSpec = ts
	}
	readOnly, optional := map[string]bool{}, map[string]bool{}
	for _, d := range ts.Workspaces {
		readOnly[d.Name], optional[d.Name] = d.ReadOnly, d.Optional
	}
	for _, b := range pt.Workspaces {
		pw := b.Workspace
		if pw == "" {
			pw = b.Name
		}
		root, ok := r.wsDirs[pw]
		if !ok && (r.optionalWorkspace(pw) || optional[b.Name]) {
			continue // an optional workspace the run leaves unbound, as Tekton omits it
		}
		if !ok && !r.declared(pw) {
			// Tekton's reconciler's words, also for a workspace the
			// inline taskSpec uses without its pipeline task binding it
			// (propagated), which the run does not bind.
			return nil, invalid("pipeline task %s: expected workspace %q to be provided by pipelinerun for pipeline task %q (the Pipeline does not declare it)", name, pw, name)
		}
		if !ok {
			return nil, invalid("pipeline task %s: expected workspace %q to be provided by pipelinerun for pipeline task %q", name, pw, name)
		}
		sub := b.SubPath
		if sub != "" && (!filepath.IsLocal(sub) || tektonVar.MatchString(sub)) {
			return nil, invalid("pipeline task %s: workspace %q: subPath %q must be a relative path inside the workspace", name, b.Name, sub)
		}
		bd := binding{task: b.Name, pipeline: pw, subPath: sub, dir: root, prefix: pw, readOnly: readOnly[b.Name] || r.spec.Run.ReadOnly(pw)}
		if sub != "" {
			bd.dir = filepath.Join(root, sub)
			bd.prefix = pw + "/" + filepath.ToSlash(filepath.Clean(sub))
		}
		plan.bindings = append(plan.bindings, bd)
		tr.Spec.Workspaces = append(tr.Spec.Workspaces, r.taskBinding(b.Name, pw, sub, tr))
	}
	// As Tekton's taskrun reconciler: an inline taskSpec may use workspaces
	// it does not declare (propagated); a referenced Task may not.
	decls := append([]v1.WorkspaceDeclaration(nil), ts.Workspaces...)
	declared := map[string]bool{}
	for _, d := range decls {
		declared[d.Name] = true
	}
	if pt.TaskSpec != nil {
		for _, b := range tr.Spec.Workspaces {
			if !declared[b.Name] {
				decls = append(decls, v1.WorkspaceDeclaration{Name: b.Name})
			}
		}
	}
	if err := workspace.ValidateBindings(ctx, decls, tr.Spec.Workspaces); err != nil {
		return nil, invalid("pipeline task %s: %v", name, err)
	}
	given := pt.Params
	if !final {
		given = nil
		for _, p := range pt.Params {
			if !waitsOnResults(p.Value) {
				given = append(given, p)
			}
		}
		given = append(given, placeholders(ts, pt.Params, given)...)
	}
	if err := checkTaskParams(name, ts, given); err != nil {
		return nil, err
	}
	tr.Spec.Params = given
	// As Tekton's TaskRun reconciler, before any substitution: steps that
	// reference a StepAction become that StepAction's step, the step's
	// params (with the TaskRun's substituted into them) applied.
	if tekton.HasStepRefs(ts) {
		steps, err := r.spec.ResolveSteps(ctx, name, ts, tr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		ts.Steps = steps
	}
	if err := unsupportedSteps(name, ts); err != nil {
		return nil, err
	}
	if final {
		if err := trresources.ValidateParamArrayIndex(ts, pt.Params); err != nil {
			return nil, invalid("pipeline task %s: %v", name, err)
		}
	}

	taskName := plan.taskRef
	if taskName == "" {
		taskName = trName // Tekton's context.task.name for an embedded spec
	}
	ts = trresources.ApplyParameters(ts, tr, ts.Params...)
	ts = trresources.ApplyContexts(ts, taskName, tr)
	ts = trresources.ApplyReplacements(ts, resultPaths(ts.Results, plan.resultsDir), map[string][]string{}, map[string]map[string]string{})
	ts = trresources.ApplyReplacements(ts, exitCodePaths(ts.Steps, plan.stepsDir), map[string][]string{}, map[string]map[string]string{})
	hostDecls := make([]v1.WorkspaceDeclaration, len(decls))
	pairs := [][2]string{{plan.resultsDir, pipeline.DefaultResultPath}, {plan.scriptsDir, pipeline.ScriptDir}, {plan.stepsDir, pipeline.StepsDir}}
	for i, d := range decls {
		hostDecls[i] = d
		hostDecls[i].MountPath = ""
		for _, b := range plan.bindings {
			if b.task == d.Name {
				hostDecls[i].MountPath = b.dir
				pairs = append(pairs, [2]string{b.dir, d.GetMountPath()})
			}
		}
	}
	plan.podPaths = podPathReplacer(pairs)
	ts.Workspaces = hostDecls
	ts = trresources.ApplyWorkspaces(ctx, ts, hostDecls, tr.Spec.Workspaces, workspace.CreateVolumes(tr.Spec.Workspaces))
	for i := range ts.Steps {
		// $(step.results.<r>.path), as Tekton's ApplyResults, on the host.
		container.ApplyStepReplacements(&ts.Steps[i], stepResultPaths(ts.Steps[i], i, plan.stepsDir), map[string][]string{})
	}
	tr.Spec.TaskSpec = nil

	steps, err := v1.MergeStepsWithStepTemplate(ts.StepTemplate, ts.Steps)
	if err != nil {
		return nil, invalid("pipeline task %s: stepTemplate: %v", name, err)
	}
	// The run's podTemplate env (taskRunTemplate, the task's taskRunSpec, a
	// TaskRun's), with the TaskRun's params substituted, after each step's
	// own env, as Tekton's Pod builder appends it to every step container.
	if tpl := r.spec.Run.TaskRunSpec(name).PodTemplate; tpl != nil && len(tpl.Env) > 0 {
		tpl = trresources.ApplyPodTemplateReplacements(tpl, tr, ts.Params...)
		for i := range steps {
			steps[i].Env = append(append([]corev1.EnvVar(nil), steps[i].Env...), tpl.Env...)
		}
	}
	for i, st := range steps {
		if err := checkStep(name, stepName(st, i), st, final); err != nil {
			return nil, err
		}
	}
	plan.tr, plan.ts, plan.steps = tr, ts, steps
	return plan, nil
}

func waitsOnResults(v v1.ParamValue) bool {
	vals := append([]string{v.StringVal}, v.ArrayVal...)
	for _, o := range v.ObjectVal {
		vals = append(vals, o)
	}
	for _, s := range vals {
		if strings.Contains(s, "$(tasks.") {
			return true
		}
	}
	return false
}

// placeholders stands in, during preflight, for params whose value waits on
// another task's result: the declared type with no value, so the param
// checks see them as provided.
func placeholders(ts *v1.TaskSpec, all, kept v1.Params) v1.Params {
	keep := map[string]bool{}
	for _, p := range kept {
		keep[p.Name] = true
	}
	types := map[string]v1.ParamSpec{}
	for _, s := range ts.Params {
		types[s.Name] = s
	}
	var out v1.Params
	for _, p := range all {
		if keep[p.Name] {
			continue
		}
		s := types[p.Name]
		v := v1.ParamValue{Type: s.Type, ArrayVal: []string{}}
		if v.Type == "" {
			v.Type = v1.ParamTypeString
		}
		if v.Type == v1.ParamTypeString {
			// The reference itself, so a planned command shows what it
			// waits on (Commands).
			v.StringVal = p.Value.StringVal
		}
		if v.Type == v1.ParamTypeObject {
			v.ObjectVal = map[string]string{}
			for k := range s.Properties {
				v.ObjectVal[k] = ""
			}
		}
		out = append(out, v1.Param{Name: p.Name, Value: v})
	}
	return out
}

// resultPaths maps $(results.X.path) in all of Tekton's spellings to the
// per-TaskRun results directory on the host.
func resultPaths(results []v1.TaskResult, dir string) map[string]string {
	out := map[string]string{}
	for _, res := range results {
		p := filepath.Join(dir, res.Name)
		for _, pattern := range []string{"results.%s.path", "results[%q].path", "results['%s'].path"} {
			out[fmt.Sprintf(pattern, res.Name)] = p
		}
	}
	return out
}

// stepResultPaths maps $(step.results.X.path) in all of Tekton's spellings
// to the host directory of step i's results (stepsDir/step-<name>/results),
// as Tekton's ApplyResults maps them to /tekton/steps/step-<name>/results.
func stepResultPaths(st v1.Step, i int, stepsDir string) map[string]string {
	out := map[string]string{}
	for _, res := range st.Results {
		p := filepath.Join(stepsDir, tknpod.StepName(st.Name, i), "results", res.Name)
		for _, pattern := range []string{"step.results.%s.path", "step.results[%q].path", "step.results['%s'].path"} {
			out[fmt.Sprintf(pattern, res.Name)] = p
		}
	}
	return out
}

// exitCodePaths maps $(steps.step-<name>.exitCode.path) (unnamed steps:
// step-unnamed-<index>) to the step's exitCode file under dir, as Tekton's
// ApplyStepExitCodePath does with /tekton/steps.
func exitCodePaths(steps []v1.Step, dir string) map[string]string {
	out := map[string]string{}
	for i, st := range steps {
		n := tknpod.StepName(st.Name, i)
		out[fmt.Sprintf("steps.%s.exitCode.path", n)] = filepath.Join(dir, n, "exitCode")
	}
	return out
}

// unsupportedTask refuses what the local runner cannot do for a whole task.
func unsupportedTask(pt string, ts *v1.TaskSpec) error {
	switch {
	case len(ts.Sidecars) > 0:
		return invalid("pipeline task %s: sidecars are not supported by the local runner", pt)
	case len(ts.Volumes) > 0:
		return invalid("pipeline task %s: volumes are not supported by the local runner (use workspaces)", pt)
	}
	return nil
}

// unsupportedSteps refuses what the local runner cannot do in a step, once
// StepActions are resolved into the steps.
func unsupportedSteps(pt string, ts *v1.TaskSpec) error {
	for i, st := range ts.Steps {
		name := stepName(st, i)
		switch {
		case st.Ref != nil:
			return invalid("pipeline task %s step %s: StepAction ref %q was not resolved", pt, name, st.Ref.Name)
		case len(st.Workspaces) > 0:
			return invalid("pipeline task %s step %s: per-step workspaces are not supported by the local runner", pt, name)
		case len(st.VolumeMounts) > 0 || len(st.VolumeDevices) > 0:
			return invalid("pipeline task %s step %s: volumeMounts are not supported by the local runner", pt, name)
		case len(st.EnvFrom) > 0:
			return invalid("pipeline task %s step %s: envFrom is not supported by the local runner", pt, name)
		}
		for _, w := range st.When {
			if w.CEL != "" {
				return invalid("pipeline task %s step %s: CEL in step when expressions is not supported by the local runner", pt, name)
			}
		}
	}
	return nil
}

// checkStep rejects what would run with a Tekton variable left in it or
// cannot run on the host.
func checkStep(pt, name string, st v1.Step, final bool) error {
	fields := map[string][]string{
		"image": {st.Image}, "command": st.Command, "args": st.Args, "script": {st.Script}, "workingDir": {st.WorkingDir},
	}
	if st.StdoutConfig != nil {
		fields["stdoutConfig.path"] = []string{st.StdoutConfig.Path}
	}
	if st.StderrConfig != nil {
		fields["stderrConfig.path"] = []string{st.StderrConfig.Path}
	}
	for _, e := range st.Env {
		if e.ValueFrom != nil {
			return invalid("pipeline task %s step %s: env %s uses valueFrom, which the local runner cannot resolve", pt, name, e.Name)
		}
		fields["env "+e.Name] = []string{e.Value}
	}
	for _, w := range st.When {
		fields["when"] = append(fields["when"], w.Input)
		fields["when"] = append(fields["when"], w.Values...)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range fields[k] {
			for _, ref := range tektonVar.FindAllString(v, -1) {
				if !final && strings.HasPrefix(ref, "$(tasks.") {
					continue
				}
				if stepResultRef.MatchString(ref) && (strings.HasPrefix(k, "env ") || k == "command" || k == "args" || k == "when") {
					continue // substituted when the step starts, as Tekton's entrypoint does
				}
				return invalid("pipeline task %s step %s: %s: cannot resolve %s", pt, name, k, ref)
			}
		}
	}
	if len(st.Command) == 0 && st.Script == "" {
		return invalid("pipeline task %s step %s: no command or script (the image's entrypoint is not known without pulling it)", pt, name)
	}
	return nil
}

// run executes the planned pipeline.
func (r *runner) run(ctx context.Context) (*run.Record, error) {
	p := r.spec.Pipeline
	r.rec = &run.Record{
		Pipeline:  p.Name,
		RunID:     r.runID,
		Source:    run.SourceLocal,
		Params:    r.params,
		StartedAt: time.Now().UTC(),
	}
	r.setDeadline(r.rec.StartedAt)
	r.out.printf("stepseal: running pipeline %s locally (run %s), workspaces under %s\n", p.Name, r.runID, filepath.Join(r.workDir, "workspaces"))
	r.out.printf("stepseal: images are recorded, not pulled: every step runs as a host process with this host's tools\n")
	var failed error
	for i, o := range r.order {
		err := r.runPipelineTask(ctx, o.Name)
		if err == nil {
			continue
		}
		if len(r.final) == 0 || !taskFailed(err) {
			r.rec.FinishedAt = time.Now().UTC()
			r.out.printf("stepseal: pipeline %s failed: %v\n", p.Name, err)
			return r.rec, err
		}
		// As Tekton: the run stops scheduling tasks, and its finally tasks
		// run once nothing is running.
		failed = err
		for _, rest := range r.order[i+1:] {
			r.stoppingSkip(rest.Name)
		}
		break
	}
	if err := r.runFinally(ctx); err != nil {
		// Both failures are the run's; errors.As finds the DAG's first.
		failed = errors.Join(failed, err)
	}
	if failed != nil {
		r.rec.FinishedAt = time.Now().UTC()
		r.out.printf("stepseal: pipeline %s failed: %v\n", p.Name, failed)
		return r.rec, failed
	}
	if err := r.pipelineResults(); err != nil {
		r.rec.FinishedAt = time.Now().UTC()
		return r.rec, err
	}
	r.rec.FinishedAt = time.Now().UTC()
	r.out.printf("stepseal: pipeline %s succeeded in %s%s\n", p.Name, r.rec.FinishedAt.Sub(r.rec.StartedAt).Round(time.Millisecond), formatResults(r.rec.Results))
	return r.rec, nil
}

// setDeadline applies the run's timeouts.pipeline and timeouts.tasks to the
// tasks (finally tasks: see finallyDeadline), counted from start; zero means
// none, as in Tekton.
func (r *runner) setDeadline(start time.Time) {
	if r.spec.Run == nil {
		return
	}
	t := r.spec.Run.Timeouts
	if t.Pipeline != nil && t.Pipeline.Duration > 0 {
		r.pipelineDeadline = start.Add(t.Pipeline.Duration)
	}
	for _, x := range []struct {
		name string
		d    *metav1.Duration
	}{{"timeouts.pipeline", t.Pipeline}, {"timeouts.tasks", t.Tasks}} {
		if x.d == nil || x.d.Duration <= 0 {
			continue
		}
		if d := start.Add(x.d.Duration); r.deadline.IsZero() || d.Before(r.deadline) {
			r.deadline, r.runTimeout = d, x.name+" "+x.d.Duration.String()
		}
	}
}

func formatResults(res map[string]string) string {
	if len(res) == 0 {
		return ""
	}
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("; results:")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, res[k])
	}
	return b.String()
}

// runPipelineTask follows Tekton's pipelinerun reconciler for one task:
// skip if a parent was skipped for another reason than its when
// expressions, or if results it needs are missing; resolve and apply result
// references; evaluate when expressions; run.
func (r *runner) runPipelineTask(ctx context.Context, name string) error {
	pt := r.pipelineTask(name)
	rpt := &prresources.ResolvedPipelineTask{PipelineTask: pt}
	skip := func(reason v1.SkippingReason, detail string, record *run.Skip) error {
		r.status[name] = taskStatus{skipped: true, reason: reason}
		r.state = append(r.state, rpt)
		r.rec.Tasks = append(r.rec.Tasks, run.Task{PipelineTask: name, TaskRef: r.spec.TaskRefs[name], Skipped: true, SkipReason: string(reason) + detail})
		r.out.printf("--- %s skipped: %s%s\n", name, reason, detail)
		return r.skipRecord(ctx, pt, record)
	}
	deps := r.spec.Deps()[name]
	sort.Strings(deps)
	for _, d := range deps {
		if s := r.status[d]; s.skipped && s.reason != v1.WhenExpressionsSkip {
			return skip(v1.ParentTasksSkip, " ("+d+")", &run.Skip{Reason: string(v1.ParentTasksSkip), Parent: d})
		}
	}
	for _, ref := range v1.PipelineTaskResultRefs(pt) {
		if r.status[ref.PipelineTask].skipped {
			return skip(v1.MissingResultsSkip, fmt.Sprintf(" (%s.%s: task %s was skipped)", ref.PipelineTask, ref.Result, ref.PipelineTask),
				&run.Skip{Reason: string(v1.MissingResultsSkip), Parent: ref.PipelineTask})
		}
	}
	refs, _, err := prresources.ResolveResultRefs(r.state, prresources.PipelineRunState{rpt})
	if err != nil {
		return invalid("pipeline task %s: %v", name, err)
	}
	prresources.ApplyTaskResults(prresources.PipelineRunState{rpt}, refs)
	pt = rpt.PipelineTask
	for _, w := range pt.When {
		for _, v := range append([]string{w.Input}, w.Values...) {
			if ref := tektonVar.FindString(v); ref != "" {
				return invalid("pipeline task %s: when expression: cannot resolve %s", name, ref)
			}
		}
	}
	if err := rpt.EvaluateCEL(); err != nil {
		return invalid("pipeline task %s: when expression: CEL: %v", name, err)
	}
	if !pt.When.AllowsExecution(rpt.EvaluatedCEL) {
		return skip(v1.WhenExpressionsSkip, " ("+describeWhen(pt.When)+")", tekton.WhenSkip(r.writtenWhen(name), pt.When, rpt.EvaluatedCEL))
	}

	ts := r.taskSpec(pt)
	rpt.ResolvedTask = &trresources.ResolvedTask{TaskSpec: ts}
	prresources.PropagateResults(rpt, r.state)
	plan, results, err := r.attempts(ctx, pt, rpt.ResolvedTask.TaskSpec)
	if plan == nil {
		return err
	}
	rpt.TaskRunNames = []string{plan.tr.Name}
	rpt.TaskRuns = []*v1.TaskRun{plan.tr}
	if err != nil {
		// The failed TaskRun as Tekton's status has it, for
		// $(tasks.status) and $(tasks.<t>.status) in finally tasks.
		setCondition(plan.tr, err)
		r.state = append(r.state, rpt)
		r.status[name] = taskStatus{}
		return err
	}
	plan.tr.Status.Results = results
	setCondition(plan.tr, nil)
	r.state = append(r.state, rpt)
	r.status[name] = taskStatus{}
	return nil
}

func describeWhen(wes v1.WhenExpressions) string {
	var parts []string
	for _, w := range wes {
		if w.CEL != "" {
			parts = append(parts, "cel: "+w.CEL)
			continue
		}
		parts = append(parts, fmt.Sprintf("%q %s %q", w.Input, w.Operator, w.Values))
	}
	return strings.Join(parts, " && ")
}

// pipelineResults computes the Pipeline's results with Tekton's
// ApplyTaskResultsToPipelineResults; results of skipped tasks are omitted,
// as Tekton does.
func (r *runner) pipelineResults() error {
	if len(r.ps.Results) == 0 {
		return nil
	}
	status, err := r.taskStatusMap()
	if err != nil {
		return err
	}
	res, err := prresources.ApplyTaskResultsToPipelineResults(r.ps.Results, r.state.GetTaskRunsResults(), nil, status)
	if err != nil {
		return fmt.Errorf("%w: pipeline %s: %w", ErrResult, r.spec.Pipeline.Name, err)
	}
	if len(res) > 0 {
		r.rec.Results = map[string]string{}
	}
	for _, x := range res {
		r.rec.Results[x.Name] = paramString(x.Value)
	}
	return nil
}

// podPathReplacer replaces each host directory of pairs (and any path under
// it) with its Pod path, longest host directory first so that a directory
// inside another is matched as itself.
func podPathReplacer(pairs [][2]string) *strings.Replacer {
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i][0]) > len(pairs[j][0]) })
	var oldnew []string
	for _, p := range pairs {
		oldnew = append(oldnew, p[0], p[1])
	}
	return strings.NewReplacer(oldnew...)
}

// plannedCommand is the command step st of plan will record in its link
// (run.Step.ExecutedCommand with Pod paths), as planned.
func plannedCommand(plan *taskPlan, st v1.Step) []string {
	pod := plan.podPaths.Replace
	if st.Script != "" {
		return run.ScriptCommand(pod(st.Script))
	}
	return append(podAll(pod, st.Command), podAll(pod, st.Args)...)
}

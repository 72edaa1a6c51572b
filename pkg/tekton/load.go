package tekton

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	"github.com/tektoncd/pipeline/pkg/workspace"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/reject"
)

// ErrInvalid marks a Pipeline or Task that cannot be loaded or is not valid
// (reject.ErrMalformed).
var ErrInvalid = reject.Sentinel(reject.ErrMalformed, "invalid Tekton resource")

// MaxFileSize bounds every YAML file read: pipelines are small, a huge file is
// a mistake or an attack.
const MaxFileSize = 4 << 20

// Spec is a loaded Pipeline with every pipeline task resolved, and what the
// run file (if any) binds it to.
type Spec struct {
	// Path is the file the Pipeline (or the run) came from.
	Path     string
	Pipeline *v1.Pipeline
	// Tasks maps a pipeline task name to its resolved TaskSpec.
	Tasks map[string]*v1.TaskSpec
	// TaskRefs maps a pipeline task name to the referenced Task's name, if any.
	TaskRefs map[string]string
	// StepActions are the StepActions the tasks' steps reference (ref.name),
	// by name, as tekton.dev/v1beta1 (a v1alpha1 one converted by Tekton);
	// ResolveSteps merges them into the steps.
	StepActions map[string]*v1beta1.StepAction
	// Run is what a PipelineRun or TaskRun file says about the run: its
	// params, workspace bindings, timeouts and the files its ConfigMap and
	// Secret workspaces hold. Nil for a Pipeline file.
	Run *Run
	// Notes are lines for the progress output about what loading left out:
	// the Kubernetes objects of the files a local run has no use for (one
	// line), fields of the run that have no meaning on this host.
	Notes []string
	// Files are the files the run, the Pipeline, its Tasks and the objects
	// its workspaces bind were read from, sorted: the run's definition.
	Files []string
	// Config is Tekton's configuration with the feature flags of the run
	// file's tekton-pipelines/feature-flags ConfigMap; nil: Tekton's
	// defaults. Context puts it on a context.
	Config *config.Config
}

// Context returns ctx with s.Config attached (Tekton's config.ToContext),
// so Tekton's validation and reconciler code see the run's feature flags.
func (s *Spec) Context(ctx context.Context) context.Context {
	if s == nil || s.Config == nil {
		return ctx
	}
	return config.ToContext(ctx, s.Config)
}

// Load reads a Tekton file: a Pipeline, a PipelineRun or a TaskRun, in a
// file that may also hold Tasks, Pipelines and the Kubernetes objects the
// run refers to.
//
// A Pipeline file holds one Pipeline and no run; its params come from the
// caller (as before runs were read). A run file holds exactly one
// PipelineRun or TaskRun; its pipelineRef, taskRefs and the ConfigMaps and
// Secrets its workspaces bind are looked up by name in the run file, then
// among the documents of tasksDir (every *.yaml / *.yml file), then in the
// other YAML files of the run file's directory (there only Pipelines,
// Tasks, StepActions, ConfigMaps, Secrets and PersistentVolumeClaims are
// read; other documents are not the run's input and are skipped). The
// StepActions the steps reference (tekton.dev/v1beta1, or v1alpha1
// converted by Tekton) are looked up the same way, into Spec.StepActions. A TaskRun runs as a
// one-task Pipeline: see fromTaskRun.
//
// Strict: documents with unknown fields, a Tekton kind of another version
// than tekton.dev/v1 (StepActions: v1beta1, v1alpha1), a kind of a group Kubernetes does not define, and
// whatever Tekton's own Validate rejects are errors naming the object and
// the file. Kubernetes objects a local run has no use for (RBAC,
// ServiceAccounts, ...) are ignored, and one line of Notes says so.
func Load(ctx context.Context, path, tasksDir string) (*Spec, error) {
	ctx, flagsNote, err := withFeatureFlags(ctx, path)
	if err != nil {
		return nil, err
	}
	l := &loader{path: path, tasksDir: tasksDir, objs: newObjects(), used: map[string]bool{path: true}}
	if err := l.objs.readFile(ctx, path); err != nil {
		return nil, err
	}
	var pipelines []string
	for n := range l.objs.pipelines {
		pipelines = append(pipelines, n)
	}
	sort.Strings(pipelines)
	prs, trs := l.objs.pipelineRuns, l.objs.taskRuns
	if tasksDir != "" {
		files, err := yamlFiles(tasksDir, path)
		if err != nil {
			return nil, fmt.Errorf("%w: tasks directory: %w", ErrInvalid, err)
		}
		for _, f := range files {
			if err := l.objs.readFile(ctx, f); err != nil {
				return nil, err
			}
		}
		// Runs of the tasks directory are not this run: left out, and said so.
		for _, pr := range l.objs.pipelineRuns[len(prs):] {
			l.objs.ignored = append(l.objs.ignored, "PipelineRun/"+objectName(pr.ObjectMeta))
		}
		for _, tr := range l.objs.taskRuns[len(trs):] {
			l.objs.ignored = append(l.objs.ignored, "TaskRun/"+objectName(tr.ObjectMeta))
		}
	}
	var s *Spec
	switch {
	case len(prs)+len(trs) > 1:
		var names []string
		for _, pr := range prs {
			names = append(names, "PipelineRun "+objectName(pr.ObjectMeta))
		}
		for _, tr := range trs {
			names = append(names, "TaskRun "+objectName(tr.ObjectMeta))
		}
		return nil, fmt.Errorf("%w: %s: %d runs in one file (%s): stepseal runs one run per file", ErrInvalid, path, len(names), strings.Join(names, ", "))
	case len(prs) == 1:
		s, err = l.fromPipelineRun(ctx, prs[0])
	case len(trs) == 1:
		s, err = l.fromTaskRun(ctx, trs[0])
	case len(pipelines) == 0:
		return nil, fmt.Errorf("%w: %s: no Pipeline, PipelineRun or TaskRun (apiVersion tekton.dev/v1) found", ErrInvalid, path)
	case len(pipelines) > 1:
		return nil, fmt.Errorf("%w: %s: more than one Pipeline (%s) and no PipelineRun saying which to run", ErrInvalid, path, strings.Join(pipelines, ", "))
	default:
		s, err = l.resolve(ctx, l.objs.pipelines[pipelines[0]], "")
	}
	if err != nil {
		return nil, err
	}
	s.dropRecorders()
	if len(l.objs.ignored) > 0 {
		s.Notes = append([]string{fmt.Sprintf("stepseal: ignoring %d object(s) a local run has no use for: %s", len(l.objs.ignored), strings.Join(l.objs.ignored, ", "))}, s.Notes...)
	}
	if flagsNote != "" {
		s.Notes = append([]string{flagsNote}, s.Notes...)
		s.Config = config.FromContextOrDefaults(ctx)
	}
	for f := range l.used {
		s.Files = append(s.Files, f)
	}
	sort.Strings(s.Files)
	return s, nil
}

// Resolve validates p and resolves each of its tasks against tasks (by name).
func Resolve(ctx context.Context, path string, p *v1.Pipeline, tasks map[string]*v1.Task) (*Spec, error) {
	l := &loader{path: path, objs: newObjects(), used: map[string]bool{}, siblingsRead: true}
	l.objs.tasks = tasks
	return l.resolve(ctx, p, "")
}

// loader resolves the names a run file refers to.
type loader struct {
	path, tasksDir string
	objs           *objects
	siblingsRead   bool
	// used holds the files the objects in use came from.
	used map[string]bool
}

// siblings reads, once, the other YAML files of the run file's directory.
func (l *loader) siblings(ctx context.Context) error {
	if l.siblingsRead {
		return nil
	}
	l.siblingsRead = true
	dir := filepath.Dir(l.path)
	if l.tasksDir != "" && sameFile(dir, l.tasksDir) {
		return nil // read already, strictly
	}
	files, err := yamlFiles(dir, l.path)
	if err != nil {
		return nil //nolint:nilerr // an unreadable directory has nothing to offer
	}
	sib := newObjects()
	for _, f := range files {
		if err := sib.readSibling(ctx, f); err != nil {
			return err
		}
	}
	l.objs.merge(sib)
	return nil
}

// lookup finds kind/name among the loader's objects (m), reading the run
// file's directory when it is neither in the run file nor in the tasks
// directory, and notes the file it came from.
func lookup[T any](ctx context.Context, l *loader, m func() map[string]T, kind, name string) (T, bool, error) {
	v, ok := m()[name]
	if !ok {
		if err := l.siblings(ctx); err != nil {
			return v, false, err
		}
		v, ok = m()[name]
	}
	if ok {
		if f := l.objs.from[kind+"/"+name]; f != "" {
			l.used[f] = true
		}
	}
	return v, ok, nil
}

// where names the places lookup searches, for "not found" errors.
func (l *loader) where() string {
	w := filepath.Base(l.path)
	if l.tasksDir != "" {
		w += ", --tasks " + l.tasksDir
	}
	return w + " or the YAML files beside it"
}

// resolve validates p and resolves its tasks. Errors name label (the
// Pipeline, or the run whose inline spec p is) and the file.
func (l *loader) resolve(ctx context.Context, p *v1.Pipeline, label string) (*Spec, error) {
	path := l.path
	if f := l.objs.from["Pipeline/"+p.Name]; f != "" && label == "" {
		path = f
		l.used[f] = true
	}
	if label == "" {
		label = fmt.Sprintf("Pipeline %q", p.Name)
	}
	p.SetDefaults(ctx)
	if fe := p.Spec.Validate(ctx); fe != nil {
		return nil, fmt.Errorf("%w: %s: %s: %v", ErrInvalid, path, label, oneLine(fe.Error()))
	}
	if err := propagateWorkspaces(p); err != nil {
		return nil, fmt.Errorf("%w: %s: %s: %w", ErrInvalid, path, label, err)
	}
	s := &Spec{Path: l.path, Pipeline: p, Tasks: map[string]*v1.TaskSpec{}, TaskRefs: map[string]string{}, StepActions: map[string]*v1beta1.StepAction{}}
	// Finally tasks are resolved like the others; Tekton's Validate has
	// kept their names distinct from the DAG's.
	for _, pt := range append(append([]v1.PipelineTask(nil), p.Spec.Tasks...), p.Spec.Finally...) {
		switch {
		case pt.TaskSpec != nil:
			ts := pt.TaskSpec.TaskSpec
			s.Tasks[pt.Name] = &ts
		case pt.TaskRef != nil && pt.TaskRef.Name != "" && pt.TaskRef.Resolver == "":
			t, ok, err := lookup(ctx, l, func() map[string]*v1.Task { return l.objs.tasks }, "Task", pt.TaskRef.Name)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("%w: %s: %s: pipeline task %q references Task %q, which is not in %s", ErrInvalid, path, label, pt.Name, pt.TaskRef.Name, l.where())
			}
			ts := t.Spec
			s.Tasks[pt.Name] = &ts
			s.TaskRefs[pt.Name] = pt.TaskRef.Name
		default:
			return nil, fmt.Errorf("%w: %s: %s: pipeline task %q: only inline taskSpec or taskRef.name to a local Task are supported (no resolvers, no pipelines in pipelines)", ErrInvalid, path, label, pt.Name)
		}
		if len(s.Tasks[pt.Name].Steps) == 0 {
			return nil, fmt.Errorf("%w: %s: %s: pipeline task %q has no steps", ErrInvalid, path, label, pt.Name)
		}
		if err := l.stepActions(ctx, s, pt.Name, s.Tasks[pt.Name], path, label); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// stepActions looks up the StepActions the steps of pipeline task pt
// reference, as Tasks are looked up, into s.StepActions. A ref with a
// resolver (remote resolution) is refused.
func (l *loader) stepActions(ctx context.Context, s *Spec, pt string, ts *v1.TaskSpec, path, label string) error {
	for i, st := range ts.Steps {
		if st.Ref == nil || isRecorder(st) { // recorders: see dropRecorders
			continue
		}
		name := st.Name
		if name == "" {
			name = fmt.Sprintf("unnamed-%d", i)
		}
		if r := st.Ref.Resolver; r != "" {
			return fmt.Errorf("%w: %s: %s: pipeline task %q step %q: StepAction ref with resolver %q (remote resolution) is not supported by the local runner", ErrInvalid, path, label, pt, name, r)
		}
		sa, ok, err := lookup(ctx, l, func() map[string]*v1beta1.StepAction { return l.objs.stepActions }, "StepAction", st.Ref.Name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s: %s: pipeline task %q step %q references StepAction %q, which is not in %s", ErrInvalid, path, label, pt, name, st.Ref.Name, l.where())
		}
		s.StepActions[st.Ref.Name] = sa
	}
	return nil
}

func readDocs(path string) ([][]byte, error) {
	data, err := limited.ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
		}
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Order returns the pipeline tasks in an order Tekton's DAG could run them:
// every task after all it depends on (runAfter and result references), ties
// broken by declaration order. It is deterministic.
func (s *Spec) Order() ([]v1.PipelineTask, error) {
	tasks := v1.PipelineTaskList(s.Pipeline.Spec.Tasks)
	g, err := dag.Build(tasks, tasks.Deps())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, s.Path, err)
	}
	index := map[string]int{}
	for i, t := range tasks {
		index[t.Name] = i
	}
	var done []string
	var out []v1.PipelineTask
	for len(out) < len(tasks) {
		cand, err := dag.GetCandidateTasks(g, done...)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, s.Path, err)
		}
		if len(cand) == 0 {
			return nil, fmt.Errorf("%w: %s: pipeline tasks cannot be ordered", ErrInvalid, s.Path)
		}
		names := cand.List()
		sort.Slice(names, func(i, j int) bool { return index[names[i]] < index[names[j]] })
		done = append(done, names[0])
		out = append(out, tasks[index[names[0]]])
	}
	return out, nil
}

// Finally returns the Pipeline's finally tasks in declaration order, the
// order the local runner runs them in once every task of Order is done
// (Tekton starts them together; none may depend on another).
func (s *Spec) Finally() []v1.PipelineTask {
	return append([]v1.PipelineTask(nil), s.Pipeline.Spec.Finally...)
}

// Deps returns, for each pipeline task of Order (finally tasks are not
// among them), the names of the tasks it directly depends on.
func (s *Spec) Deps() map[string][]string {
	return v1.PipelineTaskList(s.Pipeline.Spec.Tasks).Deps()
}

// WorkspaceBinding says which pipeline workspace a task workspace is bound to
// and whether it is read-only: the Task declares it so, or the run binds the
// pipeline workspace to a ConfigMap or Secret, which Kubernetes mounts
// read-only.
type WorkspaceBinding struct {
	TaskWorkspace     string
	PipelineWorkspace string
	SubPath           string
	ReadOnly          bool
}

// Workspaces returns the workspace bindings of a pipeline task, sorted by
// pipeline workspace name. Optional task workspaces left unbound are skipped.
func (s *Spec) Workspaces(pt v1.PipelineTask) []WorkspaceBinding {
	ts := s.Tasks[pt.Name]
	readOnly := map[string]bool{}
	for _, w := range ts.Workspaces {
		readOnly[w.Name] = w.ReadOnly
	}
	var out []WorkspaceBinding
	for _, b := range pt.Workspaces {
		pw := b.Workspace
		if pw == "" {
			pw = b.Name
		}
		out = append(out, WorkspaceBinding{TaskWorkspace: b.Name, PipelineWorkspace: pw, SubPath: b.SubPath, ReadOnly: readOnly[b.Name] || s.Run.ReadOnly(pw)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PipelineWorkspace < out[j].PipelineWorkspace })
	return out
}

// propagateWorkspaces does what Tekton's PipelineRun reconciler does before
// it creates the TaskRun of a pipeline task with an inline taskSpec
// (propagated workspaces, on by default in tekton.dev/v1): every workspace
// the taskSpec's steps, sidecars or stepTemplate use
// (workspace.FindWorkspacesUsedByTask) that the pipeline task does not bind
// becomes a binding of the pipeline workspace of the same name. It is done
// once, here, so the runner and the layout generator see the same
// bindings. The bindings are added in name order (Tekton's order is a map's).
func propagateWorkspaces(p *v1.Pipeline) error {
	for _, pts := range [][]v1.PipelineTask{p.Spec.Tasks, p.Spec.Finally} {
		for i := range pts {
			pt := &pts[i]
			if pt.TaskSpec == nil {
				continue
			}
			used, err := workspace.FindWorkspacesUsedByTask(pt.TaskSpec.TaskSpec)
			if err != nil {
				return fmt.Errorf("pipeline task %q: propagated workspaces: %w", pt.Name, err)
			}
			bound := map[string]bool{}
			for _, b := range pt.Workspaces {
				bound[b.Name] = true
			}
			for _, w := range used.List() {
				if !bound[w] {
					pt.Workspaces = append(pt.Workspaces, v1.WorkspacePipelineTaskBinding{Name: w})
				}
			}
		}
	}
	return nil
}

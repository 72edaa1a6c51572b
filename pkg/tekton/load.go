package tekton

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/reject"
)

// ErrInvalid marks a Pipeline or Task that cannot be loaded or is not valid
// (reject.ErrMalformed).
var ErrInvalid = reject.Sentinel(reject.ErrMalformed, "invalid Tekton resource")

// MaxFileSize bounds every YAML file read: pipelines are small, a huge file is
// a mistake or an attack.
const MaxFileSize = 4 << 20

// Spec is a loaded Pipeline with every pipeline task resolved.
type Spec struct {
	// Path is the file the Pipeline came from.
	Path     string
	Pipeline *v1.Pipeline
	// Tasks maps a pipeline task name to its resolved TaskSpec.
	Tasks map[string]*v1.TaskSpec
	// TaskRefs maps a pipeline task name to the referenced Task's name, if any.
	TaskRefs map[string]string
}

// Load reads a Pipeline YAML file. Tasks referenced by name (taskRef.name) are
// looked up among the Task documents of tasksDir (every *.yaml / *.yml file,
// multi-document files allowed) and of the pipeline file itself.
func Load(ctx context.Context, pipelinePath, tasksDir string) (*Spec, error) {
	docs, err := readDocs(pipelinePath)
	if err != nil {
		return nil, err
	}
	var p *v1.Pipeline
	tasks := map[string]*v1.Task{}
	for _, d := range docs {
		if err := collect(d, pipelinePath, &p, tasks); err != nil {
			return nil, err
		}
	}
	if p == nil {
		return nil, fmt.Errorf("%w: %s: no Pipeline (apiVersion tekton.dev/v1) found", ErrInvalid, pipelinePath)
	}
	if tasksDir != "" {
		entries, err := os.ReadDir(tasksDir)
		if err != nil {
			return nil, fmt.Errorf("%w: tasks directory: %w", ErrInvalid, err)
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				continue
			}
			path := filepath.Join(tasksDir, n)
			docs, err := readDocs(path)
			if err != nil {
				return nil, err
			}
			var other *v1.Pipeline
			for _, d := range docs {
				if err := collect(d, path, &other, tasks); err != nil {
					return nil, err
				}
			}
		}
	}
	return Resolve(ctx, pipelinePath, p, tasks)
}

// Resolve validates p and resolves each of its tasks against tasks (by name).
func Resolve(ctx context.Context, path string, p *v1.Pipeline, tasks map[string]*v1.Task) (*Spec, error) {
	p.SetDefaults(ctx)
	if fe := p.Spec.Validate(ctx); fe != nil {
		return nil, fmt.Errorf("%w: %s: Pipeline %q: %v", ErrInvalid, path, p.Name, oneLine(fe.Error()))
	}
	if len(p.Spec.Finally) > 0 {
		return nil, fmt.Errorf("%w: %s: Pipeline %q: finally tasks are not supported yet", ErrInvalid, path, p.Name)
	}
	s := &Spec{Path: path, Pipeline: p, Tasks: map[string]*v1.TaskSpec{}, TaskRefs: map[string]string{}}
	for _, pt := range p.Spec.Tasks {
		switch {
		case pt.TaskSpec != nil:
			ts := pt.TaskSpec.TaskSpec
			s.Tasks[pt.Name] = &ts
		case pt.TaskRef != nil && pt.TaskRef.Name != "" && pt.TaskRef.Resolver == "":
			t, ok := tasks[pt.TaskRef.Name]
			if !ok {
				return nil, fmt.Errorf("%w: %s: pipeline task %q references Task %q, which is not in the tasks directory", ErrInvalid, path, pt.Name, pt.TaskRef.Name)
			}
			ts := t.Spec
			s.Tasks[pt.Name] = &ts
			s.TaskRefs[pt.Name] = pt.TaskRef.Name
		default:
			return nil, fmt.Errorf("%w: %s: pipeline task %q: only inline taskSpec or taskRef.name to a local Task are supported (no resolvers, no pipelines in pipelines)", ErrInvalid, path, pt.Name)
		}
		if len(s.Tasks[pt.Name].Steps) == 0 {
			return nil, fmt.Errorf("%w: %s: pipeline task %q has no steps", ErrInvalid, path, pt.Name)
		}
	}
	return s, nil
}

func collect(doc []byte, path string, p **v1.Pipeline, tasks map[string]*v1.Task) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, path, oneLine(err.Error()))
	}
	if meta.Kind == "" && meta.APIVersion == "" {
		return nil // empty document
	}
	if meta.APIVersion != "tekton.dev/v1" {
		return fmt.Errorf("%w: %s: %s has apiVersion %q, only tekton.dev/v1 is supported", ErrInvalid, path, meta.Kind, meta.APIVersion)
	}
	switch meta.Kind {
	case "Pipeline":
		var pl v1.Pipeline
		if err := yaml.UnmarshalStrict(doc, &pl); err != nil {
			return fmt.Errorf("%w: %s: Pipeline: %v", ErrInvalid, path, oneLine(err.Error()))
		}
		if *p != nil {
			return fmt.Errorf("%w: %s: more than one Pipeline", ErrInvalid, path)
		}
		*p = &pl
	case "Task":
		var t v1.Task
		if err := yaml.UnmarshalStrict(doc, &t); err != nil {
			return fmt.Errorf("%w: %s: Task: %v", ErrInvalid, path, oneLine(err.Error()))
		}
		t.SetDefaults(context.Background())
		if fe := t.Spec.Validate(context.Background()); fe != nil {
			return fmt.Errorf("%w: %s: Task %q: %v", ErrInvalid, path, t.Name, oneLine(fe.Error()))
		}
		if _, dup := tasks[t.Name]; dup {
			return fmt.Errorf("%w: %s: Task %q defined twice", ErrInvalid, path, t.Name)
		}
		tasks[t.Name] = &t
	default:
		return fmt.Errorf("%w: %s: unsupported kind %q (want Pipeline or Task)", ErrInvalid, path, meta.Kind)
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

// Deps returns, for each pipeline task, the names of the tasks it directly depends on.
func (s *Spec) Deps() map[string][]string {
	return v1.PipelineTaskList(s.Pipeline.Spec.Tasks).Deps()
}

// WorkspaceBinding says which pipeline workspace a task workspace is bound to
// and whether the Task declared it read-only.
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
		out = append(out, WorkspaceBinding{TaskWorkspace: b.Name, PipelineWorkspace: pw, SubPath: b.SubPath, ReadOnly: readOnly[b.Name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PipelineWorkspace < out[j].PipelineWorkspace })
	return out
}

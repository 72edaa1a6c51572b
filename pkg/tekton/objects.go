package tekton

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// objects are the documents of the files a run is loaded from, by kind and
// name. Each remembers the file it came from, for error messages and
// provenance.
type objects struct {
	pipelines map[string]*v1.Pipeline
	tasks     map[string]*v1.Task
	// stepActions are tekton.dev/v1beta1 StepActions, v1alpha1 ones
	// converted with Tekton's conversion.
	stepActions  map[string]*v1beta1.StepAction
	pipelineRuns []*v1.PipelineRun
	taskRuns     []*v1.TaskRun
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	claims       map[string]*corev1.PersistentVolumeClaim
	// from maps "<Kind>/<name>" to the file the object came from.
	from map[string]string
	// ignored lists "<Kind>/<name>" of Kubernetes objects a local run has
	// no use for (RBAC, ServiceAccounts, ...), in file order.
	ignored []string
}

func newObjects() *objects {
	return &objects{
		pipelines: map[string]*v1.Pipeline{}, tasks: map[string]*v1.Task{},
		stepActions: map[string]*v1beta1.StepAction{},
		configMaps:  map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, from: map[string]string{},
	}
}

// tektonGroup is the API group of Tekton's Pipeline kinds; only its v1
// version is read, and StepActions, whose versions are v1beta1 and v1alpha1.
const tektonGroup = "tekton.dev"

// readFile adds every document of path. Strict: a document that does not
// parse, has unknown fields, is a Tekton kind of another version than v1 or
// a kind of a group Kubernetes does not define is an error naming the file
// and the object. Kubernetes objects other than ConfigMaps, Secrets and
// PersistentVolumeClaims are recorded as ignored.
func (o *objects) readFile(ctx context.Context, path string) error {
	docs, err := readDocs(path)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := o.add(ctx, d, path, false); err != nil {
			return err
		}
	}
	return nil
}

// readSibling adds the Pipelines, Tasks, ConfigMaps, Secrets and
// PersistentVolumeClaims (and StepActions) of a file that merely shares the run file's
// directory: every other document, and a file that is not YAML at all, is
// not an input of the run and is skipped; the kinds it does use are read as
// strictly as in readFile.
func (o *objects) readSibling(ctx context.Context, path string) error {
	docs, err := readDocs(path)
	if err != nil {
		return nil //nolint:nilerr // not YAML, too large: not ours
	}
	for _, d := range docs {
		if err := o.add(ctx, d, path, true); err != nil {
			return err
		}
	}
	return nil
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
	} `json:"metadata"`
}

func (m typeMeta) name() string {
	if m.Metadata.Name != "" {
		return m.Metadata.Name
	}
	if m.Metadata.GenerateName != "" {
		return m.Metadata.GenerateName + "*"
	}
	return "(no name)"
}

func (o *objects) add(ctx context.Context, doc []byte, path string, sibling bool) error {
	var meta typeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		if sibling {
			return nil
		}
		return fmt.Errorf("%w: %s: %v", ErrInvalid, path, oneLine(err.Error()))
	}
	if meta.Kind == "" && meta.APIVersion == "" {
		return nil // empty document
	}
	gv, err := schema.ParseGroupVersion(meta.APIVersion)
	if err != nil {
		if sibling {
			return nil
		}
		return fmt.Errorf("%w: %s: %s %s: apiVersion %q: %v", ErrInvalid, path, meta.Kind, meta.name(), meta.APIVersion, err)
	}
	what := meta.Kind + " " + meta.name()
	if gv.Group == tektonGroup {
		if meta.Kind == "StepAction" && (gv.Version == "v1beta1" || gv.Version == "v1alpha1") {
			return o.addStepAction(ctx, doc, path, meta, gv.Version)
		}
		if sibling && (gv.Version != "v1" || (meta.Kind != "Pipeline" && meta.Kind != "Task")) {
			return nil
		}
		if meta.Kind == "StepAction" {
			return fmt.Errorf("%w: %s: %s has apiVersion %q, StepActions are read in tekton.dev/v1beta1 and tekton.dev/v1alpha1", ErrInvalid, path, what, meta.APIVersion)
		}
		if gv.Version != "v1" {
			return fmt.Errorf("%w: %s: %s has apiVersion %q, only tekton.dev/v1 is supported", ErrInvalid, path, what, meta.APIVersion)
		}
		return o.addTekton(ctx, doc, path, meta)
	}
	if gv.Group == "" && gv.Version == "v1" {
		switch meta.Kind {
		case "ConfigMap", "Secret", "PersistentVolumeClaim":
			return o.addCore(doc, path, meta)
		}
	}
	if sibling {
		return nil
	}
	if !scheme.Scheme.Recognizes(gv.WithKind(meta.Kind)) {
		return fmt.Errorf("%w: %s: %s: apiVersion %q kind %q is neither a Tekton v1 kind nor a Kubernetes kind", ErrInvalid, path, what, meta.APIVersion, meta.Kind)
	}
	o.ignored = append(o.ignored, meta.Kind+"/"+meta.name())
	return nil
}

func (o *objects) addTekton(ctx context.Context, doc []byte, path string, meta typeMeta) error {
	key := meta.Kind + "/" + meta.Metadata.Name
	if meta.Metadata.Name != "" {
		if prev, dup := o.from[key]; dup {
			return fmt.Errorf("%w: %s: %s %q defined twice (also in %s)", ErrInvalid, path, meta.Kind, meta.Metadata.Name, prev)
		}
	}
	switch meta.Kind {
	case "Pipeline":
		var pl v1.Pipeline
		if err := yaml.UnmarshalStrict(doc, &pl); err != nil {
			return fmt.Errorf("%w: %s: Pipeline %s: %v", ErrInvalid, path, meta.name(), oneLine(err.Error()))
		}
		o.pipelines[pl.Name] = &pl
	case "Task":
		var t v1.Task
		if err := yaml.UnmarshalStrict(doc, &t); err != nil {
			return fmt.Errorf("%w: %s: Task %s: %v", ErrInvalid, path, meta.name(), oneLine(err.Error()))
		}
		t.SetDefaults(ctx)
		if fe := t.Spec.Validate(ctx); fe != nil {
			return fmt.Errorf("%w: %s: Task %q: %v", ErrInvalid, path, t.Name, oneLine(fe.Error()))
		}
		o.tasks[t.Name] = &t
	case "PipelineRun":
		var pr v1.PipelineRun
		if err := yaml.UnmarshalStrict(doc, &pr); err != nil {
			return fmt.Errorf("%w: %s: PipelineRun %s: %v", ErrInvalid, path, meta.name(), oneLine(err.Error()))
		}
		o.pipelineRuns = append(o.pipelineRuns, &pr)
	case "TaskRun":
		var tr v1.TaskRun
		if err := yaml.UnmarshalStrict(doc, &tr); err != nil {
			return fmt.Errorf("%w: %s: TaskRun %s: %v", ErrInvalid, path, meta.name(), oneLine(err.Error()))
		}
		o.taskRuns = append(o.taskRuns, &tr)
	default:
		return fmt.Errorf("%w: %s: %s %s: unsupported kind %q (want Pipeline, Task, PipelineRun or TaskRun)", ErrInvalid, path, meta.Kind, meta.name(), meta.Kind)
	}
	if meta.Metadata.Name != "" {
		o.from[key] = path
	}
	return nil
}

// addStepAction reads a StepAction: tekton.dev/v1beta1, or v1alpha1
// converted to v1beta1 with Tekton's own conversion (as the apiserver
// serves it to the TaskRun reconciler), defaulted and validated by Tekton.
func (o *objects) addStepAction(ctx context.Context, doc []byte, path string, meta typeMeta, version string) error {
	key := "StepAction/" + meta.Metadata.Name
	if prev, dup := o.from[key]; dup {
		return fmt.Errorf("%w: %s: StepAction %q defined twice (also in %s)", ErrInvalid, path, meta.Metadata.Name, prev)
	}
	var sa v1beta1.StepAction
	if version == "v1alpha1" {
		var old v1alpha1.StepAction
		if err := yaml.UnmarshalStrict(doc, &old); err != nil {
			return fmt.Errorf("%w: %s: StepAction %s: %v", ErrInvalid, path, meta.name(), oneLine(err.Error()))
		}
		if err := old.ConvertTo(ctx, &sa); err != nil {
			return fmt.Errorf("%w: %s: StepAction %s: converting v1alpha1 to v1beta1: %v", ErrInvalid, path, meta.name(), err)
		}
	} else if err := yaml.UnmarshalStrict(doc, &sa); err != nil {
		return fmt.Errorf("%w: %s: StepAction %s: %v", ErrInvalid, path, meta.name(), oneLine(err.Error()))
	}
	sa.SetDefaults(ctx)
	if fe := sa.Validate(ctx); fe != nil {
		return fmt.Errorf("%w: %s: StepAction %q: %v", ErrInvalid, path, sa.Name, oneLine(fe.Error()))
	}
	o.stepActions[sa.Name] = &sa
	o.from[key] = path
	return nil
}

func (o *objects) addCore(doc []byte, path string, meta typeMeta) error {
	key := meta.Kind + "/" + meta.Metadata.Name
	if prev, dup := o.from[key]; dup {
		return fmt.Errorf("%w: %s: %s %q defined twice (also in %s)", ErrInvalid, path, meta.Kind, meta.Metadata.Name, prev)
	}
	var err error
	switch meta.Kind {
	case "ConfigMap":
		var cm corev1.ConfigMap
		if err = yaml.UnmarshalStrict(doc, &cm); err == nil {
			o.configMaps[cm.Name] = &cm
		}
	case "Secret":
		var s corev1.Secret
		if err = yaml.UnmarshalStrict(doc, &s); err == nil {
			o.secrets[s.Name] = &s
		}
	case "PersistentVolumeClaim":
		var c corev1.PersistentVolumeClaim
		if err = yaml.UnmarshalStrict(doc, &c); err == nil {
			o.claims[c.Name] = &c
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %s %s: %v", ErrInvalid, path, meta.Kind, meta.name(), oneLine(err.Error()))
	}
	o.from[key] = path
	return nil
}

// yamlFiles lists the *.yaml and *.yml files of dir, sorted, leaving out skip.
func yamlFiles(dir string, skip string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		p := filepath.Join(dir, n)
		if sameFile(p, skip) {
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// merge adds the objects of other that o does not have yet (by kind and
// name): the run file and the tasks directory win over the files that only
// share the run file's directory.
func (o *objects) merge(other *objects) {
	mergeKind(o, other, "Pipeline", o.pipelines, other.pipelines)
	mergeKind(o, other, "Task", o.tasks, other.tasks)
	mergeKind(o, other, "StepAction", o.stepActions, other.stepActions)
	mergeKind(o, other, "ConfigMap", o.configMaps, other.configMaps)
	mergeKind(o, other, "Secret", o.secrets, other.secrets)
	mergeKind(o, other, "PersistentVolumeClaim", o.claims, other.claims)
}

// mergeKind adds other's objects of one kind that o does not have, with
// the file each came from.
func mergeKind[T any](o, other *objects, kind string, dst, src map[string]T) {
	for n, v := range src {
		if _, ok := dst[n]; !ok {
			dst[n], o.from[kind+"/"+n] = v, other.from[kind+"/"+n]
		}
	}
}

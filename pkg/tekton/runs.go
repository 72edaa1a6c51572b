package tekton

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Run is what a PipelineRun or TaskRun file binds its Pipeline to: data the
// loader hands to the runner and the layout generator, which treat every
// run alike.
type Run struct {
	// Kind is "PipelineRun" or "TaskRun"; Name is the run's metadata.name
	// (its generateName without the trailing "-" when it has no name).
	Kind, Name string
	// Generated is true when the run has only a generateName (the
	// apiserver would add a random suffix to Name); Namespace is its
	// metadata.namespace, "default" when it has none (where kubectl
	// creates it without -n).
	Generated bool
	Namespace string
	// Params are the run's params, as typed in the file.
	Params v1.Params
	// Workspaces are the run's workspace bindings of the Pipeline's
	// workspaces (for a TaskRun, of the one-task Pipeline's, named as the
	// Task's workspaces).
	Workspaces []v1.WorkspaceBinding
	// Timeouts are the timeouts the run declares; Tekton's defaults are not
	// applied (a local run has no cluster-wide default). A TaskRun's
	// timeout is its pipeline task's timeout.
	Timeouts v1.TimeoutFields
	// Sources maps each pipeline workspace the run binds to a ConfigMap,
	// Secret or projected volume to the files Kubernetes would mount there (keys, or items with
	// their paths; the binding's subPath applied), sorted by path.
	Sources map[string][]File
	// TaskRunTemplate and TaskRunSpecs are the PipelineRun's (a TaskRun's
	// podTemplate and serviceAccountName are its template; its stepSpecs,
	// sidecarSpecs and computeResources its one task's spec), checked by
	// the loader; TaskRunSpec merges them as Tekton does.
	TaskRunTemplate v1.PipelineTaskRunTemplate
	TaskRunSpecs    []v1.PipelineTaskRunSpec
}

// File is one file of a ConfigMap or Secret workspace.
type File struct {
	// Path is slash-separated and relative to the workspace.
	Path string
	Data []byte
	// Mode is the mode Kubernetes would give it, without write bits: the
	// volume is mounted read-only.
	Mode os.FileMode
}

// Binding returns the run's binding of pipeline workspace w, if any.
func (r *Run) Binding(w string) (v1.WorkspaceBinding, bool) {
	if r == nil {
		return v1.WorkspaceBinding{}, false
	}
	for _, b := range r.Workspaces {
		if b.Name == w {
			return b, true
		}
	}
	return v1.WorkspaceBinding{}, false
}

// ReadOnly reports whether the run binds pipeline workspace w to a volume
// Kubernetes always mounts read-only (a ConfigMap, a Secret, or a projected
// volume of them).
func (r *Run) ReadOnly(w string) bool {
	b, ok := r.Binding(w)
	return ok && (b.ConfigMap != nil || b.Secret != nil || b.Projected != nil)
}

// WorkspaceDir is where pipeline workspace w lives, relative to the run's
// work directory: "workspaces/<w>" (emptyDir, volumeClaimTemplate,
// ConfigMap, Secret, projected, or no run), "claims/<claimName>" for a
// persistentVolumeClaim (workspaces bound to the same claim share it),
// followed by the run binding's subPath.
func (s *Spec) WorkspaceDir(w string) string {
	dir := path.Join("workspaces", w)
	b, ok := s.Run.Binding(w)
	if !ok {
		return dir
	}
	if b.PersistentVolumeClaim != nil {
		dir = path.Join("claims", b.PersistentVolumeClaim.ClaimName)
	}
	if b.SubPath != "" && b.ConfigMap == nil && b.Secret == nil && b.Projected == nil {
		dir = path.Join(dir, b.SubPath)
	}
	return dir
}

func objectName(m metav1.ObjectMeta) string {
	if m.Name != "" {
		return m.Name
	}
	return strings.TrimSuffix(m.GenerateName, "-")
}

func namespace(m metav1.ObjectMeta) string {
	if m.Namespace != "" {
		return m.Namespace
	}
	return metav1.NamespaceDefault
}

// nameGenerated gives an object with only a generateName the name the
// apiserver would before Tekton validates it (a 5-character suffix).
func nameGenerated(m *metav1.ObjectMeta) {
	if m.Name == "" && m.GenerateName != "" {
		m.Name = m.GenerateName + "local"
	}
}

// fromPipelineRun resolves a PipelineRun: its inline pipelineSpec (named
// after the run, as Tekton names an embedded Pipeline) or the Pipeline its
// pipelineRef names, validated by Tekton with the run's own checks.
func (l *loader) fromPipelineRun(ctx context.Context, pr *v1.PipelineRun) (*Spec, error) {
	name := objectName(pr.ObjectMeta)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: PipelineRun %q: "+format, append([]any{ErrInvalid, l.path, name}, args...)...)
	}
	checked := pr.DeepCopy()
	nameGenerated(&checked.ObjectMeta)
	checked.SetDefaults(ctx)
	if fe := checked.Validate(ctx); fe != nil {
		return nil, fail("%v", oneLine(fe.Error()))
	}
	spec := pr.Spec
	var notes []string
	switch {
	case spec.Status != "":
		return nil, fail("spec.status %q: a pending or cancelled run has nothing to run", spec.Status)
	}
	var p *v1.Pipeline
	label := ""
	switch {
	case spec.PipelineSpec != nil:
		p = &v1.Pipeline{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: *spec.PipelineSpec.DeepCopy()}
		label = fmt.Sprintf("PipelineRun %q: pipelineSpec", name)
	case spec.PipelineRef != nil && spec.PipelineRef.Name != "" && spec.PipelineRef.Resolver == "":
		found, ok, err := lookup(ctx, l, func() map[string]*v1.Pipeline { return l.objs.pipelines }, "Pipeline", spec.PipelineRef.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fail("pipelineRef: Pipeline %q is not in %s", spec.PipelineRef.Name, l.where())
		}
		p = found.DeepCopy()
	default:
		return nil, fail("pipelineRef: only pipelineRef.name to a local Pipeline is supported (no resolvers, no bundles)")
	}
	s, err := l.resolve(ctx, p, label)
	if err != nil {
		return nil, err
	}
	run := &Run{Kind: "PipelineRun", Name: name, Generated: pr.Name == "", Namespace: namespace(pr.ObjectMeta), Params: spec.Params, Workspaces: spec.Workspaces,
		TaskRunTemplate: spec.TaskRunTemplate, TaskRunSpecs: spec.TaskRunSpecs}
	if spec.Timeouts != nil {
		run.Timeouts = *spec.Timeouts
	}
	if spec.PipelineSpec != nil {
		declareRunWorkspaces(s.Pipeline, spec.Workspaces)
	}
	if notes, err = taskRunSpecs("PipelineRun "+name, run, s.Tasks, fail); err != nil {
		return nil, err
	}
	if err := l.bindings(ctx, run, fail); err != nil {
		return nil, err
	}
	s.Run, s.Notes = run, notes
	return s, nil
}

// declareRunWorkspaces declares in an inline pipelineSpec the workspaces
// its tasks use that the PipelineRun binds but the spec does not declare:
// Tekton binds a pipeline task's workspaces to the PipelineRun's bindings
// by name, declared or not (propagated workspaces), and the runner and the
// layout generator then treat them as any declared workspace.
func declareRunWorkspaces(p *v1.Pipeline, bindings []v1.WorkspaceBinding) {
	declared := map[string]bool{}
	for _, d := range p.Spec.Workspaces {
		declared[d.Name] = true
	}
	used := map[string]bool{}
	for _, pt := range append(append([]v1.PipelineTask(nil), p.Spec.Tasks...), p.Spec.Finally...) {
		for _, b := range pt.Workspaces {
			w := b.Workspace
			if w == "" {
				w = b.Name
			}
			used[w] = true
		}
	}
	for _, b := range bindings {
		if used[b.Name] && !declared[b.Name] {
			p.Spec.Workspaces = append(p.Spec.Workspaces, v1.PipelineWorkspaceDeclaration{Name: b.Name})
			declared[b.Name] = true
		}
	}
}

// fromTaskRun turns a TaskRun into the one-task Pipeline Tekton's
// PipelineRun controller would make of it: the Pipeline and its one
// pipeline task are named after the TaskRun (so its steps are
// "<taskRun>.<step>" in links and the layout); the Pipeline declares the
// Task's params (so -p works as for any run) and passes each on; its
// workspaces are the Task's, and the pipeline task binds those the TaskRun
// binds or the Task requires; the TaskRun's timeout and retries are the
// pipeline task's.
func (l *loader) fromTaskRun(ctx context.Context, tr *v1.TaskRun) (*Spec, error) {
	name := objectName(tr.ObjectMeta)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: TaskRun %q: "+format, append([]any{ErrInvalid, l.path, name}, args...)...)
	}
	checked := tr.DeepCopy()
	nameGenerated(&checked.ObjectMeta)
	checked.SetDefaults(ctx)
	if fe := checked.Validate(ctx); fe != nil {
		return nil, fail("%v", oneLine(fe.Error()))
	}
	spec := tr.Spec
	switch {
	case spec.Status != "":
		return nil, fail("spec.status %q: a cancelled run has nothing to run", spec.Status)
	case spec.Debug != nil:
		return nil, fail("debug is not supported by the local runner")
	}
	pt := v1.PipelineTask{Name: name, Timeout: spec.Timeout, Retries: spec.Retries}
	var ts *v1.TaskSpec
	switch {
	case spec.TaskSpec != nil:
		ts = spec.TaskSpec.DeepCopy()
		pt.TaskSpec = &v1.EmbeddedTask{TaskSpec: *ts}
	case spec.TaskRef != nil && spec.TaskRef.Name != "" && spec.TaskRef.Resolver == "" && (spec.TaskRef.Kind == "" || spec.TaskRef.Kind == v1.NamespacedTaskKind):
		t, ok, err := lookup(ctx, l, func() map[string]*v1.Task { return l.objs.tasks }, "Task", spec.TaskRef.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fail("taskRef: Task %q is not in %s", spec.TaskRef.Name, l.where())
		}
		ts = t.Spec.DeepCopy()
		pt.TaskRef = &v1.TaskRef{Name: spec.TaskRef.Name}
	default:
		return nil, fail("taskRef: only taskRef.name to a local Task is supported (no resolvers, no bundles, no other kinds)")
	}
	p := &v1.Pipeline{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ps := range ts.Params {
		p.Spec.Params = append(p.Spec.Params, *ps.DeepCopy())
		ref := "$(params." + ps.Name + ")"
		if ps.Type == v1.ParamTypeArray || ps.Type == v1.ParamTypeObject {
			ref = "$(params." + ps.Name + "[*])"
		}
		pt.Params = append(pt.Params, v1.Param{Name: ps.Name, Value: *v1.NewStructuredValues(ref)})
	}
	bound := map[string]bool{}
	for _, b := range spec.Workspaces {
		bound[b.Name] = true
	}
	declared := map[string]bool{}
	for _, w := range ts.Workspaces {
		declared[w.Name] = true
		if w.Optional && !bound[w.Name] {
			continue
		}
		p.Spec.Workspaces = append(p.Spec.Workspaces, v1.PipelineWorkspaceDeclaration{Name: w.Name, Optional: w.Optional})
		pt.Workspaces = append(pt.Workspaces, v1.WorkspacePipelineTaskBinding{Name: w.Name, Workspace: w.Name})
	}
	if spec.TaskSpec != nil {
		// An inline taskSpec may use workspaces the TaskRun binds without
		// declaring them: Tekton's TaskRun reconciler propagates them.
		for _, b := range spec.Workspaces {
			if !declared[b.Name] {
				declared[b.Name] = true
				p.Spec.Workspaces = append(p.Spec.Workspaces, v1.PipelineWorkspaceDeclaration{Name: b.Name})
				pt.Workspaces = append(pt.Workspaces, v1.WorkspacePipelineTaskBinding{Name: b.Name, Workspace: b.Name})
			}
		}
	}
	p.Spec.Tasks = []v1.PipelineTask{pt}
	s, err := l.resolve(ctx, p, fmt.Sprintf("TaskRun %q (run as a one-task pipeline whose task is named after it)", name))
	if err != nil {
		return nil, err
	}
	run := &Run{Kind: "TaskRun", Name: name, Generated: tr.Name == "", Namespace: namespace(tr.ObjectMeta), Params: spec.Params, Workspaces: spec.Workspaces,
		TaskRunTemplate: v1.PipelineTaskRunTemplate{PodTemplate: spec.PodTemplate, ServiceAccountName: spec.ServiceAccountName}}
	if len(spec.StepSpecs) > 0 || len(spec.SidecarSpecs) > 0 || spec.ComputeResources != nil {
		run.TaskRunSpecs = []v1.PipelineTaskRunSpec{{PipelineTaskName: name, StepSpecs: spec.StepSpecs, SidecarSpecs: spec.SidecarSpecs, ComputeResources: spec.ComputeResources}}
	}
	notes, err := taskRunSpecs("TaskRun "+name, run, s.Tasks, fail)
	if err != nil {
		return nil, err
	}
	if err := l.bindings(ctx, run, fail); err != nil {
		return nil, err
	}
	s.Run, s.Notes = run, notes
	return s, nil
}

// bindings checks the run's workspace bindings against what the local
// runner can provide and reads the files of ConfigMap and Secret bindings.
func (l *loader) bindings(ctx context.Context, run *Run, fail func(string, ...any) error) error {
	run.Sources = map[string][]File{}
	for _, b := range run.Workspaces {
		if b.SubPath != "" && (!filepath.IsLocal(b.SubPath) || strings.Contains(b.SubPath, "$(")) {
			return fail("workspace %q: subPath %q must be a relative path inside the volume", b.Name, b.SubPath)
		}
		switch {
		case b.EmptyDir != nil, b.VolumeClaimTemplate != nil:
		case b.PersistentVolumeClaim != nil:
			if c := b.PersistentVolumeClaim.ClaimName; c == "" || !filepath.IsLocal(c) || strings.ContainsAny(c, `/\`) {
				return fail("workspace %q: persistentVolumeClaim.claimName %q is not a claim name", b.Name, c)
			}
		case b.ConfigMap != nil:
			data, ok, err := l.configMapData(ctx, b.ConfigMap.Name)
			if err != nil {
				return err
			}
			if !ok && (b.ConfigMap.Optional == nil || !*b.ConfigMap.Optional) {
				return fail("workspace %q: ConfigMap %q not found in %s", b.Name, b.ConfigMap.Name, l.where())
			}
			files, err := volumeFiles(data, ok, b.ConfigMap.Items, b.ConfigMap.DefaultMode, b.ConfigMap.Optional, b.SubPath)
			if err != nil {
				return fail("workspace %q: ConfigMap %q %v", b.Name, b.ConfigMap.Name, err)
			}
			run.Sources[b.Name] = files
		case b.Secret != nil:
			data, ok, err := l.secretData(ctx, b.Secret.SecretName)
			if err != nil {
				return err
			}
			if !ok && (b.Secret.Optional == nil || !*b.Secret.Optional) {
				return fail("workspace %q: Secret %q not found in %s", b.Name, b.Secret.SecretName, l.where())
			}
			files, err := volumeFiles(data, ok, b.Secret.Items, b.Secret.DefaultMode, b.Secret.Optional, b.SubPath)
			if err != nil {
				return fail("workspace %q: Secret %q %v", b.Name, b.Secret.SecretName, err)
			}
			run.Sources[b.Name] = files
		case b.Projected != nil:
			files, err := l.projectedFiles(ctx, b, fail)
			if err != nil {
				return err
			}
			run.Sources[b.Name] = files
		case b.CSI != nil:
			// A CSI driver's volume (secrets from a vault, images, …) is
			// whatever the driver mounts; nothing on this host reproduces it.
			return fail("workspace %q: csi (driver %q) is not supported by the local runner: a CSI driver's volume cannot be reproduced on this host", b.Name, b.CSI.Driver)
		default:
			return fail("workspace %q: only emptyDir, configMap, secret, projected (configMap and secret sources), persistentVolumeClaim and volumeClaimTemplate bindings are supported by the local runner", b.Name)
		}
	}
	return nil
}

// configMapData is a ConfigMap's data and binaryData by key; ok is false
// when there is no such ConfigMap.
func (l *loader) configMapData(ctx context.Context, name string) (map[string][]byte, bool, error) {
	cm, ok, err := lookup(ctx, l, func() map[string]*corev1.ConfigMap { return l.objs.configMaps }, "ConfigMap", name)
	if err != nil || !ok {
		return nil, false, err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data, true, nil
}

// secretData is a Secret's data and stringData by key; ok is false when
// there is no such Secret.
func (l *loader) secretData(ctx context.Context, name string) (map[string][]byte, bool, error) {
	sec, ok, err := lookup(ctx, l, func() map[string]*corev1.Secret { return l.objs.secrets }, "Secret", name)
	if err != nil || !ok {
		return nil, false, err
	}
	data := map[string][]byte{}
	for k, v := range sec.Data {
		data[k] = v
	}
	for k, v := range sec.StringData { // as the apiserver merges it
		data[k] = []byte(v)
	}
	return data, true, nil
}

// projectedFiles is what Kubernetes mounts of a projected volume whose
// sources are ConfigMaps and Secrets: each source's files as a configMap
// or secret volume of its own would have them (its items and their modes,
// the projected volume's defaultMode), side by side in one directory; two
// sources naming the same path are an error, as the apiserver's
// validation has it. Other sources (downwardAPI, serviceAccountToken,
// clusterTrustBundle, podCertificate) describe a Pod on a cluster and are
// refused.
func (l *loader) projectedFiles(ctx context.Context, b v1.WorkspaceBinding, fail func(string, ...any) error) ([]File, error) {
	var files []File
	from := map[string]string{}
	for i, src := range b.Projected.Sources {
		var (
			what, name string
			data       map[string][]byte
			ok         bool
			items      []corev1.KeyToPath
			optional   *bool
			err        error
		)
		switch {
		case src.ConfigMap != nil:
			what, name, items, optional = "ConfigMap", src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional
			data, ok, err = l.configMapData(ctx, name)
		case src.Secret != nil:
			what, name, items, optional = "Secret", src.Secret.Name, src.Secret.Items, src.Secret.Optional
			data, ok, err = l.secretData(ctx, name)
		default:
			return nil, fail("workspace %q: projected source %d: %s is not supported by the local runner: it describes a Pod on a cluster (only configMap and secret sources are)", b.Name, i, projectedKind(src))
		}
		if err != nil {
			return nil, err
		}
		if !ok && (optional == nil || !*optional) {
			return nil, fail("workspace %q: projected %s %q not found in %s", b.Name, what, name, l.where())
		}
		fs, err := volumeFiles(data, ok, items, b.Projected.DefaultMode, optional, b.SubPath)
		if err != nil {
			return nil, fail("workspace %q: projected %s %q %v", b.Name, what, name, err)
		}
		for _, f := range fs {
			src := what + " " + strconv.Quote(name)
			if prev, dup := from[f.Path]; dup {
				return nil, fail("workspace %q: projected %s and %s both give the file %q", b.Name, prev, src, f.Path)
			}
			from[f.Path] = src
			files = append(files, f)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// projectedKind names a projected volume source's kind as its field does.
func projectedKind(src corev1.VolumeProjection) string {
	switch {
	case src.DownwardAPI != nil:
		return "downwardAPI"
	case src.ServiceAccountToken != nil:
		return "serviceAccountToken"
	case src.ClusterTrustBundle != nil:
		return "clusterTrustBundle"
	case src.PodCertificate != nil:
		return "podCertificate"
	}
	return "an empty source"
}

// volumeFiles is what Kubernetes mounts of a ConfigMap or Secret volume:
// every key as a file named after it, or only the items' keys at their
// paths; a missing key is an error unless optional (the caller handles a
// missing object).
func volumeFiles(data map[string][]byte, found bool, items []corev1.KeyToPath, defaultMode *int32, optional *bool, subPath string) ([]File, error) {
	opt := optional != nil && *optional
	if !found {
		return nil, nil // optional: an empty directory
	}
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	var files []File
	if len(items) == 0 {
		for k, v := range data {
			// Kubernetes refuses such keys; here they would name files
			// outside the volume ("..", "a/../../b").
			if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
				return nil, fmt.Errorf("key %q: %s", k, strings.Join(errs, "; "))
			}
			files = append(files, File{Path: k, Data: v, Mode: mode})
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if opt {
				continue
			}
			return nil, fmt.Errorf("has no key %q", it.Key)
		}
		if !filepath.IsLocal(it.Path) {
			return nil, fmt.Errorf("item %q: path %q must be relative and inside the volume", it.Key, it.Path)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files = append(files, File{Path: path.Clean(filepath.ToSlash(it.Path)), Data: v, Mode: m})
	}
	var out []File
	sub := path.Clean(filepath.ToSlash(subPath))
	for _, f := range files {
		if subPath != "" {
			rel, ok := strings.CutPrefix(f.Path, sub+"/")
			if !ok {
				continue
			}
			f.Path = rel
		}
		f.Mode = f.Mode.Perm() &^ 0o222
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

package stepaction

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/pkg/record"
)

// ImagePlaceholder is the image of every stepseal StepAction in git: ko
// resolve replaces it with the released image by digest (hack/release.sh).
const ImagePlaceholder = "ko://github.com/stepseal/stepseal/images/stepseal"

var digestPinned = regexp.MustCompile(`^[^@\s]+@sha256:[0-9a-f]{64}$`)

// strict decodes YAML into out, refusing unknown fields (as Tekton's
// webhook does with strict decoding) and trailing documents.
func strict(t *testing.T, path string, out any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\n---")) {
		t.Fatalf("%s: one resource per file", path)
	}
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s: strict decode: %v", path, err)
	}
}

func validateCtx() context.Context {
	return config.ToContext(context.Background(), &config.Config{
		FeatureFlags: config.DefaultFeatureFlags.DeepCopy(),
		Defaults:     config.DefaultConfig.DeepCopy(),
	})
}

// checkCatalogMeta: the catalog's required metadata (TEP-0003 layout).
func checkCatalogMeta(t *testing.T, path, dirName, version string, m metav1.ObjectMeta) {
	t.Helper()
	if m.Name != dirName || filepath.Base(path) != dirName+".yaml" {
		t.Errorf("%s: name %q, directory %q: the resource, its directory and its file share one name", path, m.Name, dirName)
	}
	if got := m.Labels["app.kubernetes.io/version"]; got != version {
		t.Errorf("%s: label app.kubernetes.io/version %q, want the directory's %q", path, got, version)
	}
	for _, a := range []string{"tekton.dev/pipelines.minVersion", "tekton.dev/categories", "tekton.dev/tags", "tekton.dev/displayName", "tekton.dev/platforms"} {
		if m.Annotations[a] == "" {
			t.Errorf("%s: annotation %s missing", path, a)
		}
	}
	dir := filepath.Dir(path)
	for _, f := range []string{"README.md", "tests/run.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: the catalog requires %s: %v", path, f, err)
		}
	}
	if ss, _ := filepath.Glob(filepath.Join(dir, "samples", "*.yaml")); len(ss) == 0 {
		t.Errorf("%s: no samples/*.yaml", path)
	}
}

// checkImage: pinned by digest, or the documented ko placeholder.
func checkImage(t *testing.T, where, image string) {
	t.Helper()
	if image == ImagePlaceholder {
		if _, err := os.Stat(filepath.Join("..", strings.TrimPrefix(image, "ko://github.com/stepseal/stepseal/"), "main.go")); err != nil {
			t.Errorf("%s: placeholder %s names no main package: %v", where, image, err)
		}
		return
	}
	if !digestPinned.MatchString(image) {
		t.Errorf("%s: image %q is neither pinned by digest nor %s", where, image, ImagePlaceholder)
	}
}

// catalogFiles returns every <kind>/<name>/<version>/<name>.yaml under root.
func catalogFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "*", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		name := filepath.Base(filepath.Dir(filepath.Dir(f)))
		if filepath.Base(f) == name+".yaml" {
			out = append(out, f)
		}
	}
	return out
}

// TestStepActionsStatic is T17 for StepActions: strict decode as
// tekton.dev/v1beta1 StepAction, Tekton's Validate, catalog metadata, no
// script, image pinned or the placeholder, and the recorder's contract
// (the result names the controller recognises).
func TestStepActionsStatic(t *testing.T) {
	files := catalogFiles(t, ".")
	if len(files) < 2 {
		t.Fatalf("found %d StepActions, want at least the record pair", len(files))
	}
	results := map[string]string{
		"stepseal-record-start": record.ResultMaterials,
		"stepseal-record-stop":  record.ResultProducts,
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			var sa v1beta1.StepAction
			strict(t, f, &sa)
			if sa.APIVersion != "tekton.dev/v1beta1" || sa.Kind != "StepAction" {
				t.Fatalf("%s: %s %s, want tekton.dev/v1beta1 StepAction", f, sa.APIVersion, sa.Kind)
			}
			version := filepath.Base(filepath.Dir(f))
			name := filepath.Base(filepath.Dir(filepath.Dir(f)))
			checkCatalogMeta(t, f, name, version, sa.ObjectMeta)
			ctx := validateCtx()
			sa.SetDefaults(ctx)
			if err := sa.Validate(ctx); err != nil {
				t.Errorf("%s: Tekton validation: %v", f, err)
			}
			if sa.Spec.Script != "" {
				t.Errorf("%s: script: the stepseal image has no shell; use command/args", f)
			}
			if len(sa.Spec.Command) == 0 {
				t.Errorf("%s: no command", f)
			}
			checkImage(t, f, sa.Spec.Image)
			if want, ok := results[name]; ok {
				if len(sa.Spec.Results) != 1 || sa.Spec.Results[0].Name != want {
					t.Errorf("%s: results %v, want exactly %s (the controller recognises the recorder by it)", f, sa.Spec.Results, want)
				}
				for _, a := range sa.Spec.Args {
					if strings.Contains(a, "$(params.") && !strings.HasPrefix(a, "--") && a != "$(params.paths[*])" && a != "$(params.exclude[*])" {
						t.Errorf("%s: arg %q: params go into flags or the isolated array args", f, a)
					}
				}
			}
		})
	}
}

// TestTasksStatic is T17 for Tasks (none released yet; the catalog
// directory exists) and for every sample Task: strict decode as
// tekton.dev/v1 Task and Tekton's Validate; catalog Tasks also carry the
// metadata, pinned images and no $(params.*) inside a script.
func TestTasksStatic(t *testing.T) {
	files := catalogFiles(t, filepath.Join("..", "task"))
	samples, _ := filepath.Glob(filepath.Join("*", "*", "samples", "*.yaml"))
	if len(samples) == 0 {
		t.Fatal("no samples")
	}
	for _, f := range append(files, samples...) {
		t.Run(f, func(t *testing.T) {
			var task v1.Task
			strict(t, f, &task)
			if task.APIVersion != "tekton.dev/v1" || task.Kind != "Task" {
				t.Fatalf("%s: %s %s, want tekton.dev/v1 Task", f, task.APIVersion, task.Kind)
			}
			ctx := validateCtx()
			task.SetDefaults(ctx)
			if err := task.Validate(ctx); err != nil {
				t.Errorf("%s: Tekton validation: %v", f, err)
			}
			if strings.Contains(f, "samples") {
				return
			}
			checkCatalogMeta(t, f, filepath.Base(filepath.Dir(filepath.Dir(f))), filepath.Base(filepath.Dir(f)), task.ObjectMeta)
			for _, s := range task.Spec.Steps {
				if strings.Contains(s.Script, "$(params.") {
					t.Errorf("%s: step %s: $(params.*) inside a script; pass it through env or args", f, s.Name)
				}
				if s.Ref == nil {
					checkImage(t, f+" step "+s.Name, s.Image)
				}
			}
		})
	}
}

// TestSamplesUseThePair: each sample Task of the record pair measures a
// step with start right before it and stop right after, both naming that
// step.
func TestSamplesUseThePair(t *testing.T) {
	samples, _ := filepath.Glob(filepath.Join("stepseal-record-*", "*", "samples", "*.yaml"))
	for _, f := range samples {
		var task v1.Task
		strict(t, f, &task)
		st := task.Spec.Steps
		found := false
		for i := 1; i+1 < len(st); i++ {
			if st[i-1].Ref == nil || st[i-1].Ref.Name != "stepseal-record-start" || st[i+1].Ref == nil || st[i+1].Ref.Name != "stepseal-record-stop" {
				continue
			}
			found = true
			for _, p := range append(st[i-1].Params, st[i+1].Params...) {
				if p.Name == "step" && p.Value.StringVal != st[i].Name {
					t.Errorf("%s: a recorder around %s names step %q", f, st[i].Name, p.Value.StringVal)
				}
			}
		}
		if !found {
			t.Errorf("%s: no step between stepseal-record-start and stepseal-record-stop", f)
		}
	}
}

// TestVerifyArgsAreData: the verify Task and StepAction pass every
// parameter as the value of one --flag=… argument of the stepseal binary
// (no shell, no script, nothing a value could turn into another flag or
// argument), and the Task requests 100m CPU and 128Mi.
func TestVerifyArgsAreData(t *testing.T) {
	var task v1.Task
	strict(t, filepath.Join("..", "task", "stepseal-verify", "0.1", "stepseal-verify.yaml"), &task)
	var sa v1beta1.StepAction
	strict(t, filepath.Join("stepseal-verify", "0.1", "stepseal-verify.yaml"), &sa)
	if len(task.Spec.Steps) != 1 {
		t.Fatalf("the verify Task has %d steps, want 1", len(task.Spec.Steps))
	}
	st := task.Spec.Steps[0]
	req := st.ComputeResources.Requests
	if req.Cpu().String() != "100m" || req.Memory().String() != "128Mi" {
		t.Errorf("requests %v, want 100m CPU and 128Mi", req)
	}
	for _, c := range []struct {
		where  string
		script string
		args   []string
		params int
	}{{"Task", st.Script, st.Args, len(task.Spec.Params)}, {"StepAction", sa.Spec.Script, sa.Spec.Args, len(sa.Spec.Params)}} {
		if c.script != "" {
			t.Errorf("%s: a script", c.where)
		}
		if len(c.args) == 0 || c.args[0] != "verify" {
			t.Fatalf("%s: args %v", c.where, c.args)
		}
		used := 0
		for _, a := range c.args[1:] {
			flag, val, ok := strings.Cut(a, "=")
			if !ok || !strings.HasPrefix(flag, "--") || strings.Contains(flag, "$(") {
				t.Errorf("%s: arg %q is not one --flag=value", c.where, a)
			}
			if strings.Contains(val, "$(params.") {
				used++
				if strings.Count(val, "$(") != 1 || !strings.HasPrefix(val, "$(params.") || strings.Contains(val, "[*]") {
					t.Errorf("%s: arg %q: a parameter is the whole value of its flag", c.where, a)
				}
			}
		}
		if used != c.params {
			t.Errorf("%s: %d of %d parameters reach the binary", c.where, used, c.params)
		}
	}
}

// TestTaskSamples: each Task's samples are valid Pipelines (strict decode,
// Tekton's Validate) that use the Task by name.
func TestTaskSamples(t *testing.T) {
	samples, _ := filepath.Glob(filepath.Join("..", "task", "*", "*", "samples", "*.yaml"))
	if len(samples) == 0 {
		t.Skip("no Task samples")
	}
	for _, f := range samples {
		var p v1.Pipeline
		strict(t, f, &p)
		ctx := validateCtx()
		p.SetDefaults(ctx)
		if err := p.Validate(ctx); err != nil {
			t.Errorf("%s: Tekton validation: %v", f, err)
		}
		name := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(f))))
		found := false
		for _, pt := range p.Spec.Tasks {
			found = found || (pt.TaskRef != nil && pt.TaskRef.Name == name)
		}
		if !found {
			t.Errorf("%s: does not use Task %s", f, name)
		}
	}
}

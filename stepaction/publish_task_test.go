package stepaction

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/internal/publishtest"
	"github.com/stepseal/stepseal/pkg/publish"
)

var publishDir = filepath.Join("..", "task", "stepseal-publish", "0.1")

func loadPublishTask(t *testing.T) *v1.Task {
	t.Helper()
	var task v1.Task
	strict(t, filepath.Join(publishDir, "stepseal-publish.yaml"), &task)
	return &task
}

// TestPublishTaskContract: the stepseal-publish Task's interface — Chains'
// type-hinted results, the workspaces read-only (the key Secret's too),
// credentials through DOCKER_CONFIG, every param reaching stepseal as one
// whole argument of its single step (no script: the image has no shell),
// and the defaults naming the files internal/publishtest and the
// controller's signing Secret use.
func TestPublishTaskContract(t *testing.T) {
	task := loadPublishTask(t)
	want := map[string]v1.ResultsType{publish.ResultImageURL: v1.ResultsTypeString, publish.ResultImageDigest: v1.ResultsTypeString, publish.ResultArtifactOutputs: v1.ResultsTypeObject}
	for _, r := range task.Spec.Results {
		typ := r.Type
		if typ == "" {
			typ = v1.ResultsTypeString
		}
		if w, ok := want[r.Name]; !ok || w != typ {
			t.Errorf("result %s of type %q, want one of %v", r.Name, typ, want)
		}
		delete(want, r.Name)
		if r.Name == publish.ResultArtifactOutputs {
			for _, p := range []string{"uri", "digest", "isBuildArtifact"} {
				if _, ok := r.Properties[p]; !ok {
					t.Errorf("%s has no property %s (Chains reads it)", r.Name, p)
				}
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("results missing: %v", want)
	}
	optional := map[string]bool{"dockerconfig": true, "ssl-ca-directory": true}
	for _, w := range task.Spec.Workspaces {
		if !w.ReadOnly {
			t.Errorf("workspace %s is writable; the Task only reads", w.Name)
		}
		if w.Optional != optional[w.Name] {
			t.Errorf("workspace %s optional=%v", w.Name, w.Optional)
		}
	}
	if len(task.Spec.Steps) != 1 || len(task.Spec.Sidecars) != 0 {
		t.Fatalf("%d steps, %d sidecars: the key workspace must reach stepseal's own step only", len(task.Spec.Steps), len(task.Spec.Sidecars))
	}
	s := task.Spec.Steps[0]
	if s.Script != "" || s.Image != ImagePlaceholder {
		t.Errorf("step %s: image %q, script %q: want the stepseal image and args", s.Name, s.Image, s.Script)
	}
	env := map[string]string{}
	for _, e := range s.Env {
		env[e.Name] = e.Value
	}
	if env["DOCKER_CONFIG"] != "$(workspaces.dockerconfig.path)" || env["SSL_CERT_DIR"] != "$(workspaces.ssl-ca-directory.path)" {
		t.Errorf("env %v: DOCKER_CONFIG and SSL_CERT_DIR point at their workspaces", env)
	}
	sc := s.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("step securityContext %+v: non-root, no privilege escalation, read-only root", sc)
	}
	defaults := map[string]string{}
	for _, p := range task.Spec.Params {
		if p.Default != nil {
			defaults[p.Name] = p.Default.StringVal
		}
	}
	for p, f := range map[string]string{"KEY": publishtest.KeyFile, "KEY_PASSWORD": publishtest.PasswordFile, "PLATFORM_POLICY": publishtest.PolicyFile, "POLICY_KEY": publishtest.OwnerFile} {
		if defaults[p] != f {
			t.Errorf("param %s defaults to %q, want %q", p, defaults[p], f)
		}
	}
	if _, ok := defaults["IMAGE"]; ok {
		t.Error("IMAGE has a default; it must be given")
	}
}

// TestPublishTaskParamsAreData is T16: Tekton's own substitution
// (resources.ApplyParameters, what its reconciler runs) puts each hostile
// value into exactly one argument, whole, where stepseal reads it as data.
func TestPublishTaskParamsAreData(t *testing.T) {
	task := loadPublishTask(t)
	apply := func(v string) []string {
		tr := &v1.TaskRun{Spec: v1.TaskRunSpec{Params: v1.Params{
			{Name: "IMAGE", Value: *v1.NewStructuredValues(v)},
			{Name: "ARTIFACT", Value: *v1.NewStructuredValues(v)},
		}}}
		return resources.ApplyParameters(task.Spec.DeepCopy(), tr, task.Spec.Params...).Steps[0].Args
	}
	plain := apply("x")
	// A value naming a workspace path is substituted again by Tekton's
	// workspace pass, after the params: stepseal then sees an absolute
	// path, which --source-dir refuses (TestPublishTaskStepRefusals).
	for _, v := range []string{"$(params.KEY)", "; rm -rf /", "a\nb", "$(workspaces.signing-key.path)/cosign.key", "--key=/etc/passwd", "x' \"y"} {
		args := apply(v)
		if len(args) != len(plain) || args[0] != "publish" || args[1] != v || args[2] != v {
			t.Errorf("value %q: args %q, want it whole as PATH and REF", v, args)
			continue
		}
		for i, a := range args[3:] {
			if a != plain[3+i] || !strings.HasPrefix(a, "--") {
				t.Errorf("value %q: argument %q changed", v, a)
			}
		}
	}
}

// TestPublishTaskRunValidation: the test TaskRun and the sample Pipeline
// pass Tekton's validation; an empty Secret name for the signing key is
// refused by Tekton's own validation (its webhook), naming the field,
// before any Pod exists.
func TestPublishTaskRunValidation(t *testing.T) {
	var tr v1.TaskRun
	strict(t, filepath.Join(publishDir, "tests", "run.yaml"), &tr)
	ctx := validateCtx()
	tr.Name = "run"
	tr.SetDefaults(ctx)
	if err := tr.Validate(ctx); err != nil {
		t.Fatalf("tests/run.yaml: %v", err)
	}
	var p v1.Pipeline
	strict(t, filepath.Join(publishDir, "samples", "build-and-publish.yaml"), &p)
	p.SetDefaults(ctx)
	if err := p.Validate(ctx); err != nil {
		t.Fatalf("sample: %v", err)
	}
	bad := tr.DeepCopy()
	for i, w := range bad.Spec.Workspaces {
		if w.Name == "signing-key" {
			bad.Spec.Workspaces[i].Secret = &corev1.SecretVolumeSource{SecretName: ""}
		}
	}
	err := bad.Validate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "secret.secretName") {
		t.Errorf("empty signing-key Secret name: %v, want Tekton's missing field secret.secretName", err)
	}
}

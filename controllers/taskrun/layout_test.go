package taskrun

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/verify"
)

// releasePipeline uses a catalog-like git-clone StepAction (ref:) whose
// step results become a task result, consumed by build; build's workspace
// is read-only, one step writes step artifacts and the last step writes
// the type-hinted IMAGE_URL/IMAGE_DIGEST (step artifacts need Tekton's
// enable-artifacts flag).
const releasePipeline = `apiVersion: v1
kind: ConfigMap
metadata:
  name: feature-flags
  namespace: tekton-pipelines
data:
  enable-artifacts: "true"
---
apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata:
  name: git-clone
spec:
  image: registry.example/git-init@sha256:1111111111111111111111111111111111111111111111111111111111111111
  params:
  - name: URL
  - name: REVISION
    default: main
  - name: OUTPUT_PATH
  results:
  - name: COMMIT
  - name: URL
  env:
  - name: PARAM_URL
    value: $(params.URL)
  - name: PARAM_REVISION
    value: $(params.REVISION)
  - name: PARAM_OUTPUT_PATH
    value: $(params.OUTPUT_PATH)
  script: |
    git clone "$PARAM_URL" "$PARAM_OUTPUT_PATH" && cd "$PARAM_OUTPUT_PATH" && git checkout "$PARAM_REVISION"
    git rev-parse HEAD | tr -d '\n' > $(step.results.COMMIT.path)
    printf %s "$PARAM_URL" > $(step.results.URL.path)
---
apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: release
spec:
  params:
  - name: repo
  workspaces:
  - name: source
  tasks:
  - name: fetch
    workspaces:
    - name: output
      workspace: source
    taskSpec:
      workspaces:
      - name: output
      results:
      - name: commit
        value: $(steps.clone.results.COMMIT)
      steps:
      - name: clone
        ref:
          name: git-clone
        params:
        - name: URL
          value: $(params.repo)
        - name: OUTPUT_PATH
          value: $(workspaces.output.path)
  - name: build
    params:
    - name: revision
      value: $(tasks.fetch.results.commit)
    workspaces:
    - name: src
      workspace: source
    taskSpec:
      params:
      - name: revision
      workspaces:
      - name: src
        readOnly: true
      results:
      - name: IMAGE_URL
      - name: IMAGE_DIGEST
      steps:
      - name: compile
        image: registry.example/go@sha256:2222222222222222222222222222222222222222222222222222222222222222
        script: |
          cd $(workspaces.src.path) && go build -o /tmp/app .
          printf '{"outputs":[{"name":"app","values":[{"uri":"pkg:generic/app","digest":{"sha256":"%s"}}]}]}' "$(sha256sum /tmp/app | cut -d' ' -f1)" > $(step.artifacts.path)
      - name: push
        image: registry.example/crane@sha256:3333333333333333333333333333333333333333333333333333333333333333
        script: |
          printf registry.example/app > $(results.IMAGE_URL.path)
          crane push /tmp/app registry.example/app | cut -d@ -f2 | tr -d '\n' > $(results.IMAGE_DIGEST.path)
`

const (
	prUID       = "7d4c1f3e-0000-4000-8000-000000000001"
	imageDigest = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	appSHA      = "5555555555555555555555555555555555555555555555555555555555555555"
	commit      = "0123456789abcdef0123456789abcdef01234567"
)

// releaseTaskRun is a finished TaskRun of pipeline task pt as Tekton writes
// it: labels, the resolved spec in status.taskSpec, one state per step.
func releaseTaskRun(t *testing.T, spec *tekton.Spec, pt string, steps []v1.StepState, results []v1.TaskRunResult) *v1.TaskRun {
	t.Helper()
	ts := spec.Tasks[pt]
	resolved, err := spec.ResolveSteps(context.Background(), pt, ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	status := ts.DeepCopy()
	status.Steps = resolved
	for i := range steps {
		steps[i].Terminated = terminated(0, "2026-12-07T05:00:00Z", "2026-12-07T05:00:05Z")
		steps[i].Container = "step-" + steps[i].Name
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: "release-1-" + pt, Namespace: "ci", UID: types.UID("uid-" + pt),
			Labels: map[string]string{
				pipeline.PipelineTaskLabelKey:   pt,
				pipeline.PipelineLabelKey:       "release",
				pipeline.PipelineRunUIDLabelKey: prUID,
			},
		},
		Status: v1.TaskRunStatus{TaskRunStatusFields: v1.TaskRunStatusFields{
			TaskSpec: status, Steps: steps, Results: results,
			StartTime: &metav1.Time{}, CompletionTime: &metav1.Time{},
		}},
	}
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue})
	return tr
}

func str(name, value string) v1.TaskRunResult {
	return v1.TaskRunResult{Name: name, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(value)}
}

// releaseRun is what the controller records for an honest run of
// releasePipeline, as one run.Record per TaskRun. withWorkspaces adds the
// workspace files a recording StepAction would measure (materials and
// products of the user's steps, signed by the controller).
func releaseRun(t *testing.T, spec *tekton.Spec, withWorkspaces bool, edit func(pt string, tr *v1.TaskRun)) []*run.Record {
	t.Helper()
	fetch := releaseTaskRun(t, spec, "fetch", []v1.StepState{{
		Name: "clone", ImageID: "registry.example/git-init@sha256:1111111111111111111111111111111111111111111111111111111111111111",
		Results: []v1.TaskRunStepResult{str("COMMIT", commit), str("URL", "https://git.example/app")},
	}}, []v1.TaskRunResult{str("commit", commit)})
	build := releaseTaskRun(t, spec, "build", []v1.StepState{{
		Name: "compile", ImageID: "registry.example/go@sha256:2222222222222222222222222222222222222222222222222222222222222222",
		Outputs: []v1.Artifact{{Name: "app", Values: []v1.ArtifactValue{{Uri: "pkg:generic/app", Digest: map[v1.Algorithm]string{"sha256": appSHA}}}}},
	}, {
		Name: "push", ImageID: "registry.example/crane@sha256:3333333333333333333333333333333333333333333333333333333333333333",
	}}, []v1.TaskRunResult{str("IMAGE_URL", "registry.example/app"), str("IMAGE_DIGEST", imageDigest)})
	build.Spec.Params = v1.Params{{Name: "revision", Value: *v1.NewStructuredValues(commit)}}
	var recs []*run.Record
	for _, tr := range []*v1.TaskRun{fetch, build} {
		if edit != nil {
			edit(tr.Labels[pipeline.PipelineTaskLabelKey], tr)
		}
		b, err := FromTaskRun(tr)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, b.Record)
	}
	if withWorkspaces {
		src := run.Artifacts{"source/main.go": {"sha256": sha("package main")}, "source/go.mod": {"sha256": sha("module app")}}
		recs[0].Tasks[0].Steps[0].Products = merge(recs[0].Tasks[0].Steps[0].Products, src)
		for i := range recs[1].Tasks[0].Steps {
			s := &recs[1].Tasks[0].Steps[i]
			s.Materials = merge(s.Materials, src)
			s.Products = merge(s.Products, src)
		}
	}
	return recs
}

func merge(a, b run.Artifacts) run.Artifacts {
	out := run.Artifacts{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// chain is a signed layout generated from releasePipeline and a directory
// of the controller's signed links, as `in-toto verify` reads them.
type chain struct {
	layout []byte
	owner  signing.Verifier
	ownerK in_toto.Key
	dir    string
}

func releaseChain(t *testing.T, spec *tekton.Spec, recs []*run.Record) chain {
	t.Helper()
	ctx := context.Background()
	ck, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	controller, err := signing.NewSigner(ck)
	if err != nil {
		t.Fatal(err)
	}
	sl := controllertest.ControllerLayout(t, spec, controller.Public(), false)
	data, ov, okey := sl.Data, sl.Owner, sl.OwnerKey
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root.layout"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		entries, err := seal.Links(ctx, rec, controller, seal.Previous{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if err := os.WriteFile(filepath.Join(dir, e.Name), e.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return chain{layout: data, owner: ov, ownerK: okey, dir: dir}
}

// verdicts runs stepseal's verifier (binding the pushed image) and
// in-toto-golang's InTotoVerify on the same files.
func (c chain) verdicts(t *testing.T) (*verify.Verdict, error, error) {
	t.Helper()
	ctx := context.Background()
	v, err := verify.Layout(ctx, c.layout, []signing.Verifier{c.owner}, verify.Dir(c.dir), verify.Options{
		RunID:     prUID,
		Artifacts: map[string]run.DigestSet{"registry.example/app": {"sha256": strings.TrimPrefix(imageDigest, "sha256:")}},
	})
	if v == nil {
		t.Fatal(err)
	}
	loaded, lerr := in_toto.LoadMetadata(filepath.Join(c.dir, "root.layout"))
	if lerr != nil {
		t.Fatal(lerr)
	}
	_, ierr := in_toto.InTotoVerify(loaded, map[string]in_toto.Key{c.ownerK.KeyID: c.ownerK}, c.dir, "", nil, nil, false)
	return v, err, ierr
}

func loadRelease(t *testing.T) *tekton.Spec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "release.yaml")
	if err := os.WriteFile(path, []byte(releasePipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(context.Background(), path, "")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// The layout generated from a Pipeline names its steps as the controller's
// links do, StepAction steps included: the referencing step's name, as in
// the TaskRun's status.
func TestGeneratedLayoutStepNamesMatchControllerLinks(t *testing.T) {
	spec := loadRelease(t)
	c := releaseChain(t, spec, releaseRun(t, spec, false, nil))
	var mb in_toto.Metablock
	if err := json.Unmarshal(c.layout, &mb); err != nil {
		t.Fatal(err)
	}
	var l in_toto.Layout
	raw, _ := json.Marshal(mb.Signed)
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	var layoutSteps []string
	for _, s := range l.Steps {
		layoutSteps = append(layoutSteps, s.Name)
	}
	var linkSteps []string
	for _, rec := range releaseRun(t, spec, false, nil) {
		for _, s := range rec.AllSteps() {
			linkSteps = append(linkSteps, s.Name)
		}
	}
	if d := cmp.Diff(layoutSteps, linkSteps); d != "" {
		t.Fatalf("layout steps vs the controller's link steps (-layout +links):\n%s", d)
	}
	if d := cmp.Diff([]string{"fetch.clone", "build.compile", "build.push"}, layoutSteps); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	// The StepAction's step results and the task result taken from one.
	want := [][]string{{"ALLOW", "source/**"}, {"CREATE", "results/commit"}, {"CREATE", "steps/clone/results/COMMIT"}, {"CREATE", "steps/clone/results/URL"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, l.Steps[0].ExpectedProducts); d != "" {
		t.Errorf("fetch.clone products (-want +got):\n%s", d)
	}
}

// The controller's links of an honest PipelineRun — task results, a
// StepAction's step results, step artifacts and a type-hinted image —
// satisfy the layout generated from its Pipeline, in stepseal's verifier
// (binding the image) and in in-toto-golang's; so do links that also carry
// the workspace files a recording StepAction measures.
func TestControllerLinksSatisfyGeneratedLayout(t *testing.T) {
	spec := loadRelease(t)
	for _, ws := range []bool{false, true} {
		v, err, ierr := releaseChain(t, spec, releaseRun(t, spec, ws, nil)).verdicts(t)
		if err != nil {
			t.Errorf("workspaces=%v: stepseal verify: %v", ws, err)
			for _, f := range v.Failures {
				t.Logf("  %v", f)
			}
		}
		if ierr != nil {
			t.Errorf("workspaces=%v: in-toto-golang verify: %v", ws, ierr)
		}
	}
}

// What the Pipeline does not declare is refused, naming the step and the
// artifact, by both verifiers: a result the Task in the cluster writes but
// the Pipeline's Task spec does not declare, a step result likewise, and a
// read-only workspace file changed by the step that may carry outputs
// named at run time (its ALLOW * comes after DISALLOW source/**).
func TestControllerLinksUndeclaredRefused(t *testing.T) {
	spec := loadRelease(t)
	for _, c := range []struct {
		name      string
		edit      func(pt string, tr *v1.TaskRun)
		recEdit   func(recs []*run.Record)
		step, art string
		rule      string
	}{
		{name: "undeclared task result", edit: func(pt string, tr *v1.TaskRun) {
			if pt == "build" {
				tr.Status.Results = append(tr.Status.Results, str("token", "s3cr3t"))
			}
		}, step: "build.push", art: "results/token", rule: "DISALLOW results/*"},
		{name: "undeclared step result", edit: func(pt string, tr *v1.TaskRun) {
			if pt == "fetch" {
				tr.Status.Steps[0].Results = append(tr.Status.Steps[0].Results, str("BRANCH", "evil"))
			}
		}, step: "fetch.clone", art: "steps/clone/results/BRANCH", rule: "DISALLOW *"},
		{name: "task result on a step that does not carry it", recEdit: func(recs []*run.Record) {
			recs[1].Tasks[0].Steps[0].Products["results/IMAGE_URL"] = run.DigestSet{"sha256": sha("registry.example/other")}
		}, step: "build.compile", art: "results/IMAGE_URL", rule: "DISALLOW results/*"},
		{name: "read-only workspace changed by the image step", recEdit: func(recs []*run.Record) {
			recs[1].Tasks[0].Steps[1].Products["source/main.go"] = run.DigestSet{"sha256": sha("package main // evil")}
		}, step: "build.push", art: "source/main.go", rule: "DISALLOW source/**"},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs := releaseRun(t, spec, c.recEdit != nil, c.edit)
			if c.recEdit != nil {
				c.recEdit(recs)
			}
			v, err, ierr := releaseChain(t, spec, recs).verdicts(t)
			if err == nil {
				t.Fatal("stepseal verify accepted")
			}
			var found bool
			for _, f := range v.Failures {
				var ae *verify.ArtifactRuleError
				if errors.As(f, &ae) && ae.Step == c.step && ae.Artifact == c.art && ae.Kind == "product" {
					found = true
					if !strings.Contains(ae.Rule, c.rule) {
						t.Errorf("refused by rule %q, want %q", ae.Rule, c.rule)
					}
				}
				if !errors.Is(f, verify.ErrArtifactRule) {
					t.Errorf("failure not an artifact rule: %v", f)
				}
			}
			if !found {
				t.Errorf("no failure names step %s product %s: %v", c.step, c.art, v.Failures)
			}
			if ierr == nil || !strings.Contains(ierr.Error(), c.step) || !strings.Contains(ierr.Error(), c.art) {
				t.Errorf("in-toto-golang: %v, want a refusal naming %s and %s", ierr, c.step, c.art)
			}
		})
	}
}

// A step without a name is "unnamed-<i>" in the status, the links and the
// layout; its link still records its script from status.taskSpec.
func TestFromTaskRunUnnamedStep(t *testing.T) {
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "solo", Namespace: "ci", UID: "uid-solo"},
		Status: v1.TaskRunStatus{TaskRunStatusFields: v1.TaskRunStatusFields{
			TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Name: "first", Image: "alpine", Script: "echo 1"}, {Image: "alpine", Script: "echo 2"}}},
			Steps:    []v1.StepState{{Name: "first", Container: "step-first"}, {Name: "unnamed-1", Container: "step-unnamed-1"}},
		}},
	}
	for i := range tr.Status.Steps {
		tr.Status.Steps[i].Terminated = terminated(0, "2026-12-07T05:00:00Z", "2026-12-07T05:00:05Z")
	}
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue})
	b, err := FromTaskRun(tr)
	if err != nil {
		t.Fatal(err)
	}
	steps := b.Record.Tasks[0].Steps
	if len(steps) != 2 || steps[1].Name != "solo.unnamed-1" || steps[1].Script != "echo 2" {
		t.Fatalf("steps = %+v", steps)
	}
}

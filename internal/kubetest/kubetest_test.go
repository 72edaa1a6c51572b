package kubetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

const digest = "sha256:4a5e8c1f6b0e9a2d3c7b8f1e0d9c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c"

// buildTask is a TaskRun like a CI build's: inline spec, params, a service
// account, declared results and three steps.
func buildTask(ns string) *v1.TaskRun {
	return &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "build-app", Namespace: ns, Labels: map[string]string{"app": "demo"}},
		Spec: v1.TaskRunSpec{
			ServiceAccountName: "builder",
			Params:             v1.Params{{Name: "revision", Value: *v1.NewStructuredValues("0123abcd")}},
			TaskSpec: &v1.TaskSpec{
				Params:  []v1.ParamSpec{{Name: "revision", Type: v1.ParamTypeString}},
				Results: []v1.TaskResult{{Name: "IMAGE_URL"}, {Name: "IMAGE_DIGEST"}},
				Steps: []v1.Step{
					{Name: "clone", Image: "alpine/git:2.45.2", Command: []string{"git"}, Args: []string{"clone", "https://example.com/app"}},
					{Name: "build", Image: "golang:1.26@sha256:1111111111111111111111111111111111111111111111111111111111111111", Script: "go build -o out/app ./cmd/app\n"},
					{Name: "push", Image: "gcr.io/go-containerregistry/crane:v0.22.1", Script: "crane push out/app.tar registry.example/app\n"},
				},
			},
		},
	}
}

func finishOptions() kubetest.FinishOptions {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return kubetest.FinishOptions{
		Start: start,
		Steps: []kubetest.FinishedStep{
			{Name: "clone", ImageID: "docker.io/alpine/git@" + digest,
				Outputs: []v1.TaskRunStepArtifact{{Name: "source", Values: []v1.ArtifactValue{{Uri: "git+https://example.com/app", Digest: map[v1.Algorithm]string{"sha1": "0123abcd0123abcd0123abcd0123abcd0123abcd"}}}}}},
			{Name: "build", Start: start.Add(2 * time.Second), End: start.Add(40 * time.Second),
				Results: []v1.TaskRunStepResult{{Name: "binary-digest", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(digest)}},
				Inputs:  []v1.TaskRunStepArtifact{{Name: "source", Values: []v1.ArtifactValue{{Uri: "git+https://example.com/app", Digest: map[v1.Algorithm]string{"sha1": "0123abcd0123abcd0123abcd0123abcd0123abcd"}}}}}},
			{Name: "push", ImageID: "gcr.io/go-containerregistry/crane@" + digest},
		},
		Results: []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("registry.example/app")},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(digest)},
			{Name: "TAGS", Type: v1.ResultsTypeArray, Value: *v1.NewStructuredValues("latest", "v1")},
			{Name: "META", Type: v1.ResultsTypeObject, Value: *v1.NewObject(map[string]string{"k": "v"})},
		},
		Artifacts: &v1.Artifacts{Outputs: []v1.Artifact{{Name: "image", BuildOutput: true,
			Values: []v1.ArtifactValue{{Uri: "pkg:oci/app?repository_url=registry.example", Digest: map[v1.Algorithm]string{"sha256": digest[len("sha256:"):]}}}}}},
	}
}

// TestFinishedTaskRunSurvivesStorageAndRestart checks that the status
// FinishTaskRun writes comes back whole through Tekton's clientset (nothing
// pruned by the structural CRD schema), also after kube-apiserver restarts.
func TestFinishedTaskRunSurvivesStorageAndRestart(t *testing.T) {
	c := kubetest.Start(t)
	ns := c.Namespace(t)
	ctx := t.Context()
	client, err := versioned.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := client.TektonV1().TaskRuns(ns).Create(ctx, buildTask(ns), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Status.CompletionTime != nil || len(tr.Status.Steps) != 0 {
		t.Fatalf("status written on create (it is a subresource): %+v", tr.Status)
	}
	opts := finishOptions()
	want, err := kubetest.FinishedStatus(tr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubetest.FinishTaskRun(ctx, client, tr, opts); err != nil {
		t.Fatal(err)
	}

	check := func(when string) {
		t.Helper()
		got, err := client.TektonV1().TaskRuns(ns).Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if diff := cmp.Diff(want, &got.Status, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: status read back differs (-written +read):\n%s", when, diff)
		}
		if diff := cmp.Diff(tr.Spec, got.Spec, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: spec read back differs (-created +read):\n%s", when, diff)
		}
		if !got.IsDone() || !got.IsSuccessful() {
			t.Errorf("%s: TaskRun not done and successful: %+v", when, got.Status.Conditions)
		}
	}
	check("after FinishTaskRun")

	c.Restart(t)
	check("after kube-apiserver restart")
	// Writes work again too, through the same client.
	got, err := client.TektonV1().TaskRuns(ns).Get(ctx, tr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Annotations = map[string]string{annotations.Signed: annotations.SignedTrue}
	if _, err := client.TektonV1().TaskRuns(ns).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update after restart: %v", err)
	}
	check("after an annotation update")
}

func TestFinishTaskRunFailedStep(t *testing.T) {
	c := kubetest.Start(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	client, err := versioned.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := client.TektonV1().TaskRuns(ns).Create(ctx, buildTask(ns), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := kubetest.FinishTaskRun(ctx, client, tr, kubetest.FinishOptions{
		Steps: []kubetest.FinishedStep{{Name: "clone"}, {Name: "build", ExitCode: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsDone() || got.IsSuccessful() {
		t.Fatalf("want a failed TaskRun, conditions %+v", got.Status.Conditions)
	}
	if st := got.Status.Steps[1]; st.Terminated == nil || st.Terminated.ExitCode != 2 || st.Container != "step-build" {
		t.Fatalf("step build: %+v", st)
	}
	// Defaulted image IDs carry a digest and keep the repository.
	const prefix = "alpine/git@sha256:"
	if id := got.Status.Steps[0].ImageID; !strings.HasPrefix(id, prefix) || len(id) != len(prefix)+64 {
		t.Errorf("defaulted imageID %q, want %s<64 hex>", id, prefix)
	}
}

func TestNamespacesAreFresh(t *testing.T) {
	c := kubetest.Start(t)
	a, b := c.Namespace(t), c.Namespace(t)
	if a == b {
		t.Fatalf("Namespace returned %q twice", a)
	}
}

// TestFinishedPipelineRun checks that a finished PipelineRun with child
// TaskRuns reads back whole.
func TestFinishedPipelineRun(t *testing.T) {
	c := kubetest.Start(t)
	ns := c.Namespace(t)
	ctx := t.Context()
	client, err := versioned.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	task := buildTask(ns).Spec.TaskSpec
	pr, err := client.TektonV1().PipelineRuns(ns).Create(ctx, &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: ns},
		Spec: v1.PipelineRunSpec{
			PipelineSpec: &v1.PipelineSpec{
				Tasks:   []v1.PipelineTask{{Name: "build", TaskSpec: &v1.EmbeddedTask{TaskSpec: *task}}},
				Results: []v1.PipelineResult{{Name: "IMAGE_DIGEST", Value: *v1.NewStructuredValues("$(tasks.build.results.IMAGE_DIGEST)")}},
			},
			TaskRunTemplate: v1.PipelineTaskRunTemplate{ServiceAccountName: "builder"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child, err := client.TektonV1().TaskRuns(ns).Create(ctx, kubetest.ChildTaskRun(pr, "build", task), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if child, err = kubetest.FinishTaskRun(ctx, client, child, finishOptions()); err != nil {
		t.Fatal(err)
	}
	opts := kubetest.PipelineFinishOptions{
		TaskRuns: []*v1.TaskRun{child},
		Results:  []v1.PipelineRunResult{{Name: "IMAGE_DIGEST", Value: *v1.NewStructuredValues(digest)}},
	}
	want, err := kubetest.FinishedPipelineStatus(pr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubetest.FinishPipelineRun(ctx, client, pr, opts); err != nil {
		t.Fatal(err)
	}
	got, err := client.TektonV1().PipelineRuns(ns).Get(ctx, pr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got.Status, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("status read back differs (-written +read):\n%s", diff)
	}
	if !got.IsDone() || !got.Status.GetCondition("Succeeded").IsTrue() {
		t.Errorf("PipelineRun not done and successful: %+v", got.Status.Conditions)
	}
	if got := child.Labels["tekton.dev/pipelineRun"]; got != pr.Name {
		t.Errorf("child label tekton.dev/pipelineRun = %q", got)
	}
}

package catalog

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/tektoncd/chains/pkg/chains/formats/slsa/v2alpha4"
	"github.com/tektoncd/chains/pkg/chains/objects"
	chainsconfig "github.com/tektoncd/chains/pkg/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/pkg/publish"
)

// chainsStatement is what Chains v0.26.3's slsa/v2alpha4 formatter (SLSA
// v1.0 provenance) makes of a finished TaskRun.
func chainsStatement(t *testing.T, tr *v1.TaskRun) *intoto.Statement {
	t.Helper()
	f, err := v2alpha4.NewFormatter(chainsconfig.Config{Builder: chainsconfig.BuilderConfig{ID: "https://tekton.dev/chains/v2"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.CreatePayload(context.Background(), objects.NewTaskRunObjectV1(tr))
	if err != nil {
		t.Fatalf("chains: %v", err)
	}
	return payloadStatement(t, p)
}

// payloadStatement is a Chains payload as the in-toto statement it is.
func payloadStatement(t *testing.T, p interface{}) *intoto.Statement {
	t.Helper()
	switch st := p.(type) {
	case intoto.Statement:
		return &st
	case *intoto.Statement:
		return st
	}
	t.Fatalf("chains returned %T", p)
	return nil
}

// checkChainsSubjects: Chains names IMAGE_URL's repository at IMAGE_DIGEST
// and, for a file, ARTIFACT_OUTPUTS' uri at the file's sha256 as subjects,
// and nothing else.
func checkChainsSubjects(t *testing.T, tr *v1.TaskRun) {
	t.Helper()
	res := map[string]v1.ResultValue{}
	for _, r := range tr.Status.Results {
		res[r.Name] = r.Value
	}
	url, digest := res[publish.ResultImageURL].StringVal, res[publish.ResultImageDigest].StringVal
	ao := res[publish.ResultArtifactOutputs].ObjectVal
	if url == "" || !strings.HasPrefix(digest, "sha256:") || ao["uri"] == "" {
		t.Fatalf("TaskRun %s lacks the publish results: %v", tr.Name, res)
	}
	repo, _, _ := strings.Cut(url, "@")
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	want := map[string]string{
		repo + "@" + digest:            "",
		ao["uri"] + "@" + ao["digest"]: "",
	}
	st := chainsStatement(t, tr)
	got := map[string]string{}
	for _, s := range st.Subject {
		for alg, d := range s.Digest {
			got[s.Name+"@"+alg+":"+d] = ""
		}
	}
	if len(got) != len(want) {
		t.Errorf("Chains subjects %v, want %v", keys(got), keys(want))
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("Chains subjects %v lack %s", keys(got), k)
		}
	}
	if st.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Errorf("predicate type %s", st.PredicateType)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestChainsSeesPublishSubjects is T18 on a TaskRun of stepseal-publish
// recorded on the real node (TestRealNodePublishTask writes it with
// STEPSEAL_RECORD_TASKRUN=1): Chains' own formatter, fed that object,
// names the published image and the file as subjects.
func TestChainsSeesPublishSubjects(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "publish-taskrun.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tr v1.TaskRun
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	checkChainsSubjects(t, &tr)
}

// TestChainsSeesPublishSubjectsInPipelineRun: the sample Pipeline
// (build, then stepseal-publish) as a PipelineRun whose publish child is
// the recorded TaskRun. Chains' v2alpha4 formatter names the image from
// the Pipeline's own IMAGE_URL/IMAGE_DIGEST results; with
// artifacts.pipelinerun.enable-deep-inspection it also finds the file
// (the child's ARTIFACT_OUTPUTS).
func TestChainsSeesPublishSubjectsInPipelineRun(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "publish-taskrun.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tr v1.TaskRun
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	ps, err := os.ReadFile(filepath.Join(publishTaskDir, "samples", "build-and-publish.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p v1.Pipeline
	if err := yaml.UnmarshalStrict(ps, &p); err != nil {
		t.Fatal(err)
	}
	res := map[string]v1.ResultValue{}
	for _, r := range tr.Status.Results {
		res[r.Name] = r.Value
	}
	pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "build-and-publish-1", Namespace: tr.Namespace}}
	pr.Status.PipelineSpec = &p.Spec
	pr.Status.StartTime, pr.Status.CompletionTime = tr.Status.StartTime, tr.Status.CompletionTime
	pr.Status.Results = []v1.PipelineRunResult{
		{Name: publish.ResultImageURL, Value: res[publish.ResultImageURL]},
		{Name: publish.ResultImageDigest, Value: res[publish.ResultImageDigest]},
	}
	child := tr.DeepCopy()
	child.Labels = map[string]string{objects.PipelineTaskLabel: "publish"}
	url, digest := res[publish.ResultImageURL].StringVal, res[publish.ResultImageDigest].StringVal
	repo := url[:strings.LastIndexByte(url, ':')]
	file := res[publish.ResultArtifactOutputs].ObjectVal["uri"] + "@" + res[publish.ResultArtifactOutputs].ObjectVal["digest"]
	for _, deep := range []bool{false, true} {
		cfg := chainsconfig.Config{Builder: chainsconfig.BuilderConfig{ID: "https://tekton.dev/chains/v2"}}
		cfg.Artifacts.PipelineRuns.DeepInspectionEnabled = deep
		f, err := v2alpha4.NewFormatter(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pro := objects.NewPipelineRunObjectV1(pr.DeepCopy())
		pro.AppendTaskRun(child)
		payload, err := f.CreatePayload(context.Background(), pro)
		if err != nil {
			t.Fatalf("deep=%v: %v", deep, err)
		}
		st := payloadStatement(t, payload)
		got := map[string]bool{}
		for _, s := range st.Subject {
			for alg, d := range s.Digest {
				got[s.Name+"@"+alg+":"+d] = true
			}
		}
		if !got[repo+"@"+digest] {
			t.Errorf("deep inspection %v: subjects %v lack the image %s@%s", deep, got, repo, digest)
		}
		if got[file] != deep {
			t.Errorf("deep inspection %v: file subject %s present=%v", deep, file, got[file])
		}
	}
}

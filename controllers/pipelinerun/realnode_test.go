package pipelinerun

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/layout/generate"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/verify"
)

// The Pipeline of TestRealNodeSignsPipelineRun (IMAGE: the node's busybox):
// build has two steps and no results, report runs after it and writes a result.
const realNodePipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: realnode
spec:
  tasks:
  - name: build
    taskSpec:
      steps:
      - name: compile
        image: IMAGE
        script: echo compiling
      - name: test
        image: IMAGE
        script: echo testing
  - name: report
    runAfter: [build]
    taskSpec:
      results:
      - name: digest
      steps:
      - name: summarize
        image: IMAGE
        script: printf sha256:%s "$(echo report | sha256sum | cut -d' ' -f1)" > $(results.digest.path)
`

// TestRealNodeSignsPipelineRun runs the stepseal TaskRun and PipelineRun
// controllers in-process against a real node (internal/realnode): Tekton's
// own controller runs a PipelineRun of two Tasks in real Pods, and stepseal
// signs every TaskRun and the PipelineRun. The links record the images'
// real digests; the PipelineRun's provenance names every child; the links of
// the Task without results verify against the layout generated from the
// Pipeline. The Task with a result does not yet: the controller records a
// TaskRun result as a product "results/<name>", which the generated layout's
// rules do not allow (a known gap); the test asserts that this is the only
// failure.
func TestRealNodeSignsPipelineRun(t *testing.T) {
	n := realnode.Get(t)
	ns, sysNS := n.Namespace(t), n.Namespace(t)
	t.Setenv("SYSTEM_NAMESPACE", sysNS)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pub := controllertest.Install(ctx, t, n.Kube, sysNS, map[string]string{
		settings.KeyStoreDir: dir, settings.KeyRetryBaseDelay: "100ms", settings.KeyRetryMaxDelay: "1s",
	})
	cfg, err := n.Config()
	if err != nil {
		t.Fatal(err)
	}
	shared := lifecycle.NewShared()
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, cfg, sysNS, nil,
		taskrun.NewController(shared), NewController(shared))

	busybox := n.Image(t, "BUSYBOX")
	src := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(src, []byte(strings.ReplaceAll(realNodePipeline, "IMAGE", busybox)), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = ns
	if _, err := n.Tekton.TektonV1().Pipelines(ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "realnode-1", Namespace: ns},
		Spec:       v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{Name: "realnode"}},
	}
	start := time.Now()
	if pr, err = n.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, n.Tekton, ns, pr.Name)
	t.Logf("PipelineRun done in %.1fs", time.Since(start).Seconds())
	if !done.IsSuccessful() {
		t.Fatalf("PipelineRun failed: %+v", done.Status.Conditions)
	}
	kubetest.WaitPipelineRunSigned(ctx, t, n.Tekton, ns, pr.Name)
	t.Logf("PipelineRun signed %.1fs after it was created", time.Since(start).Seconds())

	list, err := n.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("want 2 TaskRuns, got %d", len(list.Items))
	}
	for i := range list.Items {
		tr := &list.Items[i]
		if tr.Annotations[annotations.Signed] != annotations.SignedTrue {
			t.Errorf("TaskRun %s: annotations %v", tr.Name, tr.Annotations)
		}
		for _, s := range tr.Status.Steps {
			if s.ImageID != busybox {
				t.Errorf("TaskRun %s step %s: imageID %q, want %q", tr.Name, s.Name, s.ImageID, busybox)
			}
		}
	}

	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The PipelineRun's provenance names every entry stored for the run by
	// the digest of its bytes: three links, and the provenance of report (build
	// declares no output and its last step has no product, so it has none).
	p := controllertest.RunProvenance(t, ds, pub, done)
	named := map[string]string{}
	for _, d := range p.RunDetails.Byproducts {
		named[d.Name] = "sha256:" + d.Digest["sha256"]
	}
	all, err := ds.List(ctx, store.Filter{RunID: string(done.UID)})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range all {
		if strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
			continue
		}
		kinds[e.Kind]++
		if named[e.Name] != store.Digest(e.Data) {
			t.Errorf("stored %s %s (%s) is named in the PipelineRun provenance as %q", e.Kind, e.Name, store.Digest(e.Data), named[e.Name])
		}
	}
	if kinds[store.KindLink] != 3 || kinds[store.KindProvenance] != 1 || len(named) != 4 {
		t.Errorf("stored %v, provenance names %d: want 3 links and 1 TaskRun provenance", kinds, len(named))
	}

	// One link per step, each naming the busybox digest the kubelet ran.
	runID := string(done.UID)
	links, err := ds.List(ctx, store.Filter{Kind: store.KindLink, RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	digest := busybox[strings.LastIndex(busybox, "@sha256:")+len("@sha256:"):]
	for _, step := range []string{"build.compile", "build.test", "report.summarize"} {
		var found bool
		for _, e := range links {
			if strings.HasPrefix(e.Name, step+".") {
				found = true
				if !strings.Contains(string(e.Data), digest) {
					t.Errorf("link %s does not record the image digest %s", e.Name, digest)
				}
			}
		}
		if !found {
			t.Errorf("no link of %s among %d links", step, len(links))
		}
	}

	// The layout generated from the Pipeline, every step performed by the controller.
	fpath := filepath.Join(t.TempDir(), "functionaries.yaml")
	if err := os.WriteFile(fpath, []byte("apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nmetadata:\n  name: realnode\nspec:\n  functionaries:\n  - name: controller\n  steps:\n  - match: \"*\"\n    functionaries: [controller]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := layout.LoadFunctionaries(fpath)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := signing.InTotoKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	l, err := generate.FromPipeline(spec, f, map[string]in_toto.Key{"controller": ck}, layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := signing.NewSigner(ok)
	if err != nil {
		t.Fatal(err)
	}
	ov, err := signing.NewVerifier(ok.Public())
	if err != nil {
		t.Fatal(err)
	}
	mb, err := layout.Sign(ctx, *l, owner)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(mb)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.Layout(ctx, data, []signing.Verifier{ov}, &verify.StoreLinks{Store: ds, RunID: runID}, verify.Options{WithoutArtifactUnsafe: true})
	if err == nil {
		t.Logf("the whole run verifies against its Pipeline's layout (%d steps)", len(v.Steps))
		return
	}
	if v == nil {
		t.Fatal(err)
	}
	// Known gap: only report's result product may be refused.
	for _, f := range v.Failures {
		if !errors.Is(f, verify.ErrArtifactRule) || !strings.Contains(f.Error(), "report.summarize") || !strings.Contains(f.Error(), "results/digest") {
			t.Errorf("unexpected verification failure (beyond the known results/<name> product gap): %v", f)
		}
	}
	// What does verify: build's steps, whose links record no result.
	for _, s := range v.Steps {
		if strings.HasPrefix(s.Name, "build.") && !s.Passed {
			t.Errorf("step %s does not verify: %v", s.Name, s.Failures)
		}
		t.Logf("step %s: passed=%v links=%d", s.Name, s.Passed, len(s.Links))
	}
	t.Logf("known gap: report's results/digest product is refused by the generated layout: %v", err)
}

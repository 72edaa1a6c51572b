package pipelinerun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/verify"
)

// The Pipeline of TestRealNodeSignsPipelineRun (@BUSYBOX@: the node's
// busybox, @REPO@: realNodeRepo): build has two steps and no task results,
// the second a StepAction (ref:) with a step result; report runs after it
// and writes a result; publish consumes that result as a param and writes
// a step result and the type-hinted IMAGE_URL/IMAGE_DIGEST (no image is
// pushed: the results name one, as a publishing task's would).
const realNodePipeline = `apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata:
  name: checksum
spec:
  image: @BUSYBOX@
  params:
  - name: text
    default: testing
  results:
  - name: sum
  env:
  - name: TEXT
    value: $(params.text)
  script: |
    echo "$TEXT"
    printf %s "$TEXT" | sha256sum | cut -d' ' -f1 | tr -d '\n' > $(step.results.sum.path)
---
apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: realnode
spec:
  tasks:
  - name: build
    taskSpec:
      steps:
      - name: compile
        image: @BUSYBOX@
        script: echo compiling
      - name: test
        ref:
          name: checksum
  - name: report
    runAfter: [build]
    taskSpec:
      results:
      - name: digest
      steps:
      - name: summarize
        image: @BUSYBOX@
        script: printf sha256:%s "$(echo report | sha256sum | cut -d' ' -f1)" > $(results.digest.path)
  - name: publish
    params:
    - name: digest
      value: $(tasks.report.results.digest)
    taskSpec:
      params:
      - name: digest
      results:
      - name: IMAGE_URL
      - name: IMAGE_DIGEST
      steps:
      - name: tag
        image: @BUSYBOX@
        results:
        - name: ref
        env:
        - name: DIGEST
          value: $(params.digest)
        script: |
          printf %s @REPO@ > $(results.IMAGE_URL.path)
          printf %s "$DIGEST" > $(results.IMAGE_DIGEST.path)
          printf %s "@REPO@@$DIGEST" > $(step.results.ref.path)
`

// realNodeRepo is the image repository publish names.
const realNodeRepo = "registry.example/realnode/app"

// TestRealNodeSignsPipelineRun runs the stepseal TaskRun and PipelineRun
// controllers in-process against a real node (internal/realnode): Tekton's
// own controller runs a PipelineRun of three Tasks in real Pods, and
// stepseal signs every TaskRun and the PipelineRun. The links record the
// images' real digests; the PipelineRun's provenance names every child; the
// whole run — a StepAction step, task results, step results, a type-hinted
// image — verifies against the layout generated from the Pipeline, in
// stepseal's verifier (binding the image the results name) and in
// in-toto-golang's CLI.
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
	shared := controllertest.NewShared(t)
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, cfg, sysNS, nil,
		taskrun.NewController(shared), NewController(shared))

	busybox := n.Image(t, "BUSYBOX")
	src := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(src, []byte(strings.NewReplacer("@BUSYBOX@", busybox, "@REPO@", realNodeRepo).Replace(realNodePipeline)), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range spec.StepActions {
		sa = sa.DeepCopy()
		sa.Namespace = ns
		if _, err := n.Tekton.TektonV1beta1().StepActions(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
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
	if len(list.Items) != 3 {
		t.Fatalf("want 3 TaskRuns, got %d", len(list.Items))
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
	// the digest of its bytes: four links and the three TaskRuns'
	// provenances (each declares an output or its last step has a product:
	// build's StepAction step result, report's result).
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
	if kinds[store.KindLink] != 4 || kinds[store.KindProvenance] != 3 || len(named) != 7 {
		t.Errorf("stored %v, provenance names %d: want 4 links and 3 TaskRun provenances", kinds, len(named))
	}

	// One link per step, each naming the busybox digest the kubelet ran.
	runID := string(done.UID)
	links, err := ds.List(ctx, store.Filter{Kind: store.KindLink, RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	digest := busybox[strings.LastIndex(busybox, "@sha256:")+len("@sha256:"):]
	// Each also records, under the names the generated layout has rules
	// for, what Tekton reported: the StepAction step's result by the
	// referencing step's name, task results, the image the results name.
	records := map[string][]string{
		"build.test":       {`"steps/test/results/sum"`},
		"report.summarize": {`"results/digest"`},
		"publish.tag":      {`"steps/tag/results/ref"`, `"results/IMAGE_URL"`, `"results/IMAGE_DIGEST"`, `"` + realNodeRepo + `"`},
	}
	for _, step := range []string{"build.compile", "build.test", "report.summarize", "publish.tag"} {
		var found bool
		for _, e := range links {
			if strings.HasPrefix(e.Name, step+".") {
				found = true
				if !strings.Contains(string(e.Data), digest) {
					t.Errorf("link %s does not record the image digest %s", e.Name, digest)
				}
				for _, p := range records[step] {
					if !strings.Contains(string(e.Data), p) {
						t.Errorf("link %s does not record %s", e.Name, p)
					}
				}
			}
		}
		if !found {
			t.Errorf("no link of %s among %d links", step, len(links))
		}
	}

	// The layout generated from the Pipeline, every step performed by the controller.
	sl := controllertest.ControllerLayout(t, spec, pub, false)
	data, ov := sl.Data, sl.Owner
	// The image publish's results name: report's result, which publish got
	// as its param.
	d := sha256.Sum256([]byte("report\n"))
	image := map[string]run.DigestSet{realNodeRepo: {"sha256": hex.EncodeToString(d[:])}}
	v, err := verify.Layout(ctx, data, []signing.Verifier{ov}, &verify.StoreLinks{Store: ds, RunID: runID}, verify.Options{RunID: runID, Artifacts: image})
	if v == nil {
		t.Fatal(err)
	}
	for _, s := range v.Steps {
		t.Logf("step %s: passed=%v links=%d", s.Name, s.Passed, len(s.Links))
	}
	if err != nil {
		for _, f := range v.Failures {
			t.Errorf("verification failure: %v", f)
		}
		t.Fatalf("the run does not verify against its Pipeline's layout: %v", err)
	}
	if len(v.Steps) != 4 {
		t.Errorf("verdict has %d steps, want 4", len(v.Steps))
	}

	// in-toto-golang's own CLI on the same layout and the stored links.
	idir := t.TempDir()
	if err := os.WriteFile(filepath.Join(idir, "root.layout"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, e := range links {
		if err := os.WriteFile(filepath.Join(idir, e.Name), e.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pem, err := signing.MarshalPublicKeyPEM(sl.OwnerPub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(idir, "owner.pub"), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, inTotoCLI(t), "verify", "-l", filepath.Join(idir, "root.layout"), "-d", idir, "-k", filepath.Join(idir, "owner.pub"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in-toto-golang verify: %v\n%s", err, out)
	}
}

// inTotoCLI is in-toto-golang's CLI, pinned by hack/install-test-deps.sh.
func inTotoCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("in-toto-golang"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "in-toto-golang")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("in-toto-golang CLI not found (hack/install-test-deps.sh installs it): %v", err)
	}
	return p
}

package pipelinerun

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/selection"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/verify"
)

// The Pipeline of TestIntegrationSkippedAndFinally, as a user writes it:
// deploy runs only when asked to, notify (a Task by reference) announces
// deploy's URL, report runs finally.
const skipPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: release
spec:
  params:
  - name: deploy
    default: "no"
  tasks:
  - name: build
    taskSpec:
      steps:
      - name: compile
        image: golang:1.26
        script: go build ./...
  - name: deploy
    runAfter: [build]
    when:
    - input: $(params.deploy)
      operator: in
      values: ["yes"]
    taskSpec:
      results:
      - name: url
      steps:
      - name: push
        image: alpine:3
        script: printf https://prod.example.com > $(results.url.path)
      - name: smoke
        image: alpine:3
        script: "true"
  - name: notify
    params:
    - name: url
      value: $(tasks.deploy.results.url)
    taskRef:
      name: notify-task
  finally:
  - name: report
    taskSpec:
      steps:
      - name: summarize
        image: alpine:3
        script: echo done
---
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: notify-task
spec:
  params:
  - name: url
  steps:
  - name: announce
    image: alpine:3
    script: echo $(params.url)
`

// TestIntegrationSkippedAndFinally: a PipelineRun in which Tekton skips two
// tasks (deploy: its when expression is false; notify: deploy's result is
// missing) and runs a finally task, on a real kube-apiserver. The
// PipelineRun controller signs a skip record for each skipped step, its
// provenance names them, and the run verifies against the layout generated
// from its Pipeline; the same run with the skip record of deploy removed
// does not.
func TestIntegrationSkippedAndFinally(t *testing.T) {
	api := controllertest.StartAPI(t, 2*time.Minute, nil)
	ctx, ns, tk, dir, pub := api.Ctx, api.NS, api.Tekton, api.StoreDir, api.Pub
	shared := controllertest.NewShared(t)
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, api.Config(), api.SystemNS, nil,
		taskrun.NewController(shared), NewController(shared))

	// The Pipeline and the Task, loaded with Tekton's types as stepseal
	// layout create loads them, and created in the cluster.
	src := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(src, []byte(skipPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	task := &v1.Task{ObjectMeta: metav1.ObjectMeta{Name: "notify-task", Namespace: ns}, Spec: *spec.Tasks["notify"]}
	if _, err := tk.TektonV1().Tasks(ns).Create(ctx, task, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = ns
	if _, err := tk.TektonV1().Pipelines(ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// status.pipelineSpec as Tekton stores it: the run's parameters already
	// substituted, in when expressions too. The skip record takes them as
	// the Pipeline writes them, which the layout has.
	ps := spec.Pipeline.Spec.DeepCopy()
	for i := range ps.Tasks {
		for j := range ps.Tasks[i].When {
			if ps.Tasks[i].When[j].Input == "$(params.deploy)" {
				ps.Tasks[i].When[j].Input = "no"
			}
		}
	}
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release-1", Namespace: ns, Labels: map[string]string{"tekton.dev/pipeline": "release"}},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "release"},
			Params:      v1.Params{{Name: "deploy", Value: *v1.NewStructuredValues("no")}},
		},
	}
	if pr, err = tk.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var trs []*v1.TaskRun
	for _, name := range []string{"build", "report"} {
		ts := spec.Tasks[name]
		tr, err := tk.TektonV1().TaskRuns(ns).Create(ctx, kubetest.ChildTaskRun(pr, name, ts), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// No results: the controller's links record a TaskRun's results
		// as products, which a layout generated from a Pipeline does not
		// allow yet.
		if tr, err = kubetest.FinishTaskRun(ctx, tk, tr, kubetest.FinishOptions{}); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	skipped := []v1.SkippedTask{
		{Name: "deploy", Reason: v1.WhenExpressionsSkip, WhenExpressions: v1.WhenExpressions{{Input: "no", Operator: selection.In, Values: []string{"yes"}}}},
		{Name: "notify", Reason: v1.MissingResultsSkip},
	}
	if pr, err = kubetest.FinishPipelineRun(ctx, tk, pr, kubetest.PipelineFinishOptions{TaskRuns: trs, PipelineSpec: ps, SkippedTasks: skipped}); err != nil {
		t.Fatal(err)
	}
	kubetest.WaitPipelineRunSigned(ctx, t, tk, ns, pr.Name)

	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	runID := string(pr.UID)
	links, err := ds.List(ctx, store.Filter{Kind: store.KindLink, RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range links {
		names = append(names, e.Name)
	}
	for _, step := range []string{"deploy.push", "deploy.smoke", "notify.announce", "build.compile", "report.summarize"} {
		if !strings.Contains(strings.Join(names, " "), step+".") {
			t.Errorf("no link or skip record of %s among %v", step, names)
		}
	}
	p := controllertest.RunProvenance(t, ds, pub, pr)
	body, _ := json.Marshal(p)
	for _, step := range []string{"deploy.push", "notify.announce"} {
		if !strings.Contains(string(body), step+".") {
			t.Errorf("the run's provenance does not name the skip record of %s", step)
		}
	}

	// The layout of the Pipeline: the controller performs every step and
	// signs the skip records.
	sl := controllertest.ControllerLayout(t, spec, pub, true)
	data, ov := sl.Data, sl.Owner
	v, err := verify.Layout(ctx, data, []signing.Verifier{ov}, &verify.StoreLinks{Store: ds, RunID: runID}, verify.Options{WithoutArtifactUnsafe: true})
	if err != nil {
		t.Fatalf("the controller-signed run does not verify against its Pipeline's layout: %v", err)
	}
	excused := 0
	for _, s := range v.Steps {
		if s.Skipped != "" {
			excused++
		}
	}
	if excused != 3 {
		t.Errorf("want deploy.push, deploy.smoke and notify.announce excused by skip records, got %+v", v.Steps)
	}

	// Without deploy's skip records, notify's cascade has no skipped parent.
	var kept []store.Entry
	for _, e := range links {
		if !strings.HasPrefix(e.Name, "deploy.") {
			kept = append(kept, e)
		}
	}
	mem := verify.Memory{}
	for _, e := range kept {
		mem[e.Name] = e.Data
	}
	_, err = verify.Layout(ctx, data, []signing.Verifier{ov}, mem, verify.Options{WithoutArtifactUnsafe: true, RunID: runID})
	if !errors.Is(err, verify.ErrSkip) || !errors.Is(err, verify.ErrMissingStep) {
		t.Fatalf("want the missing deploy steps and notify's refused skip, got %v", err)
	}
}

package pipelinerun

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/pkg/gate"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// gatedPipeline: build and report as in realNodePipeline's first two
// tasks, then the catalog's stepseal-verify Task as the gate, scoped to
// them, its layout and owner key from the ConfigMap workspace.
const gatedPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: gated
spec:
  params:
  - name: log-url
  - name: log-key
  workspaces:
  - name: layout
  tasks:
  - name: build
    taskSpec:
      steps:
      - name: compile
        image: @BUSYBOX@
        script: echo compiling
  - name: report
    runAfter: [build]
    taskSpec:
      results:
      - name: digest
      steps:
      - name: summarize
        image: @BUSYBOX@
        script: printf sha256:%s "$(echo report | sha256sum | cut -d' ' -f1)" > $(results.digest.path)
  - name: verify
    runAfter: [report]
    taskRef:
      name: stepseal-verify
    workspaces:
    - name: layout
      workspace: layout
    params:
    - name: LOG_URL
      value: $(params.log-url)
    - name: LOG_KEY
      value: $(params.log-key)
    - name: STEPS
      value: build,report
`

// gatedStepPipeline: the same build and report, then a deploy task whose
// first step is the catalog's stepseal-verify StepAction (a gate inside a
// Task) and whose next step reads its VERDICT.
const gatedStepPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: gated-step
spec:
  params:
  - name: log-url
  - name: log-key
  workspaces:
  - name: layout
  tasks:
  - name: build
    taskSpec:
      steps:
      - name: compile
        image: @BUSYBOX@
        script: echo compiling
  - name: report
    runAfter: [build]
    taskSpec:
      steps:
      - name: summarize
        image: @BUSYBOX@
        script: echo report
  - name: deploy
    runAfter: [report]
    workspaces:
    - name: layout
      workspace: layout
    params:
    - name: log-url
      value: $(params.log-url)
    - name: log-key
      value: $(params.log-key)
    taskSpec:
      params:
      - name: log-url
      - name: log-key
      workspaces:
      - name: layout
        readOnly: true
      steps:
      - name: gate
        ref:
          name: stepseal-verify
        params:
        - name: log-url
          value: $(params.log-url)
        - name: log-key
          value: $(params.log-key)
        - name: layout-dir
          value: $(workspaces.layout.path)
        - name: steps
          value: build,report
      - name: use
        image: @BUSYBOX@
        env:
        - name: VERDICT
          value: $(steps.gate.results.VERDICT)
        script: echo "gate said $VERDICT"
`

// bridgeGateway is the host's address on the node's CNI bridge
// (hack/kube/node-lib.sh: 10.244.0.0/24, isGateway): what a Pod reaches
// the host at.
const bridgeGateway = "10.244.0.1"

// TestRealNodeVerifyGate runs the catalog's stepseal-verify Task as the
// last task of a PipelineRun in real Pods. The served log runs in the test
// (pkg/logserver, the server behind `stepseal log serve`), on loopback for
// the controller and on the CNI bridge's gateway for the Pods; the stepseal
// TaskRun controller, in-process, writes to it with its logserver backend.
// The controller starts only once the gate's Pod runs, so the gate must
// wait for the links of build and report: it does, then passes
// (VERDICT=PASSED). Then, each a TaskRun of the Task in a real Pod: the
// same verification of the finished run, timed against `stepseal verify`
// alone; the StepAction as a gate step inside a Task, whose next step
// reads its VERDICT (PASSED); a run ID the log holds no links of — made of values a shell
// would act on — fails when its wait ends, naming the missing steps, and
// with STRICT=false the TaskRun succeeds with VERDICT=FAILED.
func TestRealNodeVerifyGate(t *testing.T) {
	n := realnode.Get(t)
	ns, sysNS := n.Namespace(t), n.Namespace(t)
	t.Setenv("SYSTEM_NAMESPACE", sysNS)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	busybox := n.Image(t, "BUSYBOX")
	registry, _, _ := strings.Cut(busybox, "/")
	image := realnode.StepsealImage(ctx, t, registry)

	// The served log: the controller's address first, the Pods' once the
	// bridge exists (the first Pod creates it).
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lo.Addr().String())
	logDir := t.TempDir()
	key, err := logserver.KeyInDir(logDir, "example.com/realnode-gate")
	if err != nil {
		t.Fatal(err)
	}
	logPub, err := os.ReadFile(filepath.Join(logDir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub := controllertest.Install(ctx, t, n.Kube, sysNS, map[string]string{
		settings.KeyBackends: "logserver", settings.KeyLogServerURL: "http://" + lo.Addr().String() + "/",
		settings.KeyLogServerKey:   filepath.Join(logDir, "log.pub"),
		settings.KeyRetryBaseDelay: "100ms", settings.KeyRetryMaxDelay: "1s",
	})
	ctrlKey, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := logserver.Open(ctx, filepath.Join(logDir, "served"), key, logserver.Options{Keys: []signing.Verifier{ctrlKey}})
	if err != nil {
		t.Fatal(err)
	}
	// gateLooked closes when a Pod first searches the log: the gate's
	// first look, before the controller runs.
	gateLooked := make(chan struct{})
	var once sync.Once
	h := srv.Handler()
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.RemoteAddr, "10.244.") && strings.HasPrefix(r.URL.Path, "/v1/search") {
			once.Do(func() { close(gateLooked) })
		}
		h.ServeHTTP(w, r)
	})}
	go hs.Serve(lo)
	go func() {
		for ctx.Err() == nil {
			if l, err := net.Listen("tcp", net.JoinHostPort(bridgeGateway, port)); err == nil {
				t.Logf("served log on %s for the Pods", l.Addr())
				hs.Serve(l)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { hs.Close(); srv.Close(context.Background()) })
	podURL := "http://" + net.JoinHostPort(bridgeGateway, port) + "/"

	// The Task from the catalog, its image this checkout's; the layout of
	// the Pipeline with the controller performing every step, in a
	// ConfigMap with its owner's key.
	taskFile := filepath.Join("..", "..", "task", "stepseal-verify", "0.1", "stepseal-verify.yaml")
	tb, err := os.ReadFile(taskFile)
	if err != nil {
		t.Fatal(err)
	}
	tb = bytes.ReplaceAll(tb, []byte("ko://github.com/stepseal/stepseal/images/stepseal"), []byte(image))
	src := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(src, append([]byte(strings.ReplaceAll(gatedPipeline, "@BUSYBOX@", busybox)+"---\n"), tb...), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	sl := controllertest.ControllerLayout(t, spec, pub, false)
	ownerPEM, err := signing.MarshalPublicKeyPEM(sl.OwnerPub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "gated-layout"},
		Data:       map[string]string{"root.layout": string(sl.Data), "owner.pub": string(ownerPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var task v1.Task
	if err := yaml.UnmarshalStrict(tb, &task); err != nil {
		t.Fatal(err)
	}
	task.Namespace = ns
	if _, err := n.Tekton.TektonV1().Tasks(ns).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = ns
	if _, err := n.Tekton.TektonV1().Pipelines(ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	layoutWS := v1.WorkspaceBinding{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gated-layout"}}}
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }

	// 1. The gate starts before the controller signed anything.
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "gated-1", Namespace: ns},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "gated"},
			Params:      v1.Params{{Name: "log-url", Value: str(podURL)}, {Name: "log-key", Value: str(strings.TrimSpace(string(logPub)))}},
			Workspaces:  []v1.WorkspaceBinding{{Name: "layout", ConfigMap: layoutWS.ConfigMap}},
		},
	}
	start := time.Now()
	if pr, err = n.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gateTR := waitGateRunning(ctx, t, n, ns, pr.Name)
	select {
	case <-gateLooked:
	case <-ctx.Done():
		t.Fatal("the gate never searched the served log")
	}
	t.Logf("gate Pod %s looked at the log %.1fs after the PipelineRun was created; starting the controller", gateTR.Status.PodName, time.Since(start).Seconds())
	controllertest.RunControllers(injection.WithNamespaceScope(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), ns), t, mustConfig(t, n), sysNS, nil,
		taskrun.NewController(controllertest.NewShared(t)))
	done := realnode.WaitPipelineRun(ctx, t, n.Tekton, ns, pr.Name)
	t.Logf("PipelineRun done in %.1fs", time.Since(start).Seconds())
	tr, err := n.Tekton.TektonV1().TaskRuns(ns).Get(ctx, gateTR.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := stepLog(ctx, t, n, ns, tr.Status.PodName)
	if !done.IsSuccessful() {
		if list, err := n.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, tr := range list.Items {
				t.Logf("TaskRun %s: annotations %v finalizers %v", tr.Name, tr.Annotations, tr.Finalizers)
			}
		}
		if evs, err := n.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
			for _, e := range evs.Items {
				t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
		t.Fatalf("PipelineRun failed: %+v\ngate log:\n%s", done.Status.Conditions, log)
	}
	verdict, summary := gateResults(t, tr)
	if verdict != "PASSED" || summary.RunID != string(done.UID) || summary.Steps != 2 || summary.Passed != 2 {
		t.Fatalf("gate: VERDICT %s, SUMMARY %+v\n%s", verdict, summary, log)
	}
	if !bytes.Contains(log, []byte("waiting up to 2m0s for the links of 2 step(s): build.compile, report.summarize")) || !bytes.Contains(log, []byte("VERIFICATION PASSED")) {
		t.Fatalf("the gate did not wait for the links, or did not report:\n%s", log)
	}
	t.Logf("gate TaskRun (waited for the controller): %s", taskRunTimes(tr))

	// 2. The same verification of the finished run, in a Pod and alone.
	runTask := func(name string, params v1.Params) *v1.TaskRun {
		t.Helper()
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "stepseal-verify"}, Workspaces: []v1.WorkspaceBinding{layoutWS},
				Params: append(v1.Params{{Name: "LOG_URL", Value: str(podURL)}, {Name: "LOG_KEY", Value: str(strings.TrimSpace(string(logPub)))},
					{Name: "STEPS", Value: str("build,report")}}, params...)},
		}
		if _, err := n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return realnode.WaitTaskRun(ctx, t, n.Tekton, ns, name)
	}
	again := runTask("verify-again", v1.Params{{Name: "RUN_ID", Value: str(string(done.UID))}, {Name: "WAIT", Value: str("0s")}})
	if v, _ := gateResults(t, again); !again.IsSuccessful() || v != "PASSED" {
		t.Fatalf("verify of the finished run in a Pod: %s %+v", v, again.Status.Conditions)
	}
	cli := filepath.Join(t.TempDir(), "stepseal")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "github.com/stepseal/stepseal/images/stepseal").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lay := t.TempDir()
	if err := os.WriteFile(filepath.Join(lay, "root.layout"), sl.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lay, "owner.pub"), ownerPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cliStart := time.Now()
	out, err := exec.CommandContext(ctx, cli, "verify", "--from", "http://"+lo.Addr().String()+"/", "--log-key", strings.TrimSpace(string(logPub)),
		"--run-id", string(done.UID), "--layout-dir", lay, "--steps", "build,report").CombinedOutput()
	if err != nil {
		t.Fatalf("stepseal verify alone: %v\n%s", err, out)
	}
	t.Logf("wall time: the verify Task in a real Pod %s; stepseal verify alone on the same run %.3fs", taskRunTimes(again), time.Since(cliStart).Seconds())

	// 3. The StepAction: a gate inside the deploy Task, whose next step
	// reads its VERDICT.
	sab, err := os.ReadFile(filepath.Join("..", "..", "stepaction", "stepseal-verify", "0.1", "stepseal-verify.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sab = bytes.ReplaceAll(sab, []byte("ko://github.com/stepseal/stepseal/images/stepseal"), []byte(image))
	ssrc := filepath.Join(t.TempDir(), "gated-step.yaml")
	if err := os.WriteFile(ssrc, append([]byte(strings.ReplaceAll(gatedStepPipeline, "@BUSYBOX@", busybox)+"---\n"), sab...), 0o644); err != nil {
		t.Fatal(err)
	}
	sspec, err := tekton.Load(ctx, ssrc, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sspec.StepActions {
		sa = sa.DeepCopy()
		sa.Namespace = ns
		if _, err := n.Tekton.TektonV1beta1().StepActions(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ssl := controllertest.ControllerLayout(t, sspec, pub, false)
	sOwnerPEM, err := signing.MarshalPublicKeyPEM(ssl.OwnerPub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "gated-step-layout"},
		Data:       map[string]string{"root.layout": string(ssl.Data), "owner.pub": string(sOwnerPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spl := sspec.Pipeline.DeepCopy()
	spl.Namespace = ns
	if _, err := n.Tekton.TektonV1().Pipelines(ns).Create(ctx, spl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "gated-step-1", Namespace: ns},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "gated-step"},
			Params:      v1.Params{{Name: "log-url", Value: str(podURL)}, {Name: "log-key", Value: str(strings.TrimSpace(string(logPub)))}},
			Workspaces: []v1.WorkspaceBinding{{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "gated-step-layout"}}}},
		},
	}
	if spr, err = n.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, spr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sdone := realnode.WaitPipelineRun(ctx, t, n.Tekton, ns, spr.Name)
	deploy, err := n.Tekton.TektonV1().TaskRuns(ns).Get(ctx, spr.Name+"-deploy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var stepVerdict string
	for _, st := range deploy.Status.Steps {
		for _, r := range st.Results {
			if st.Name == "gate" && r.Name == "VERDICT" {
				stepVerdict = r.Value.StringVal
			}
		}
	}
	useLog, _ := n.Logs(ctx, ns, deploy.Status.PodName, "step-use")
	if !sdone.IsSuccessful() || stepVerdict != "PASSED" || !bytes.Contains(useLog, []byte("gate said PASSED")) {
		t.Fatalf("gate step: PipelineRun succeeded %v, VERDICT %q, next step's log %q\ngate log:\n%s", sdone.IsSuccessful(), stepVerdict, useLog, stepLog(ctx, t, n, ns, deploy.Status.PodName, "step-gate"))
	}
	// The StepAction's cost is its step (no Pod of its own); the kubelet
	// records step times in whole seconds.
	t.Logf("wall time: the verify StepAction as the gate step of the deploy Task: %s", taskRunTimes(deploy))

	// 4. A run ID the log has no links of, made of shell syntax: the wait
	// ends, the missing steps are named; STRICT=false succeeds with FAILED.
	bad := "; rm -rf / $(x)\nnext-line"
	lax := runTask("verify-other-run", v1.Params{{Name: "RUN_ID", Value: str(bad)}, {Name: "WAIT", Value: str("3s")}, {Name: "STRICT", Value: str("false")}})
	v, s := gateResults(t, lax)
	if !lax.IsSuccessful() || v != "FAILED" || strings.Join(s.Missing, ",") != "build.compile,report.summarize" || !strings.Contains(s.Note, "no link found") {
		t.Fatalf("STRICT=false, links missing: succeeded %v, %s %+v", lax.IsSuccessful(), v, s)
	}
	strictTR := runTask("verify-other-run-strict", v1.Params{{Name: "RUN_ID", Value: str(bad)}, {Name: "WAIT", Value: str("3s")}})
	log = stepLog(ctx, t, n, ns, strictTR.Status.PodName)
	if strictTR.IsSuccessful() || !bytes.Contains(log, []byte(`step "build.compile": no link found`)) {
		t.Fatalf("STRICT, links missing: succeeded %v\n%s", strictTR.IsSuccessful(), log)
	}
}

func mustConfig(t *testing.T, n *realnode.Node) *rest.Config {
	t.Helper()
	cfg, err := n.Config()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitGateRunning waits until the PipelineRun's verify TaskRun has a Pod
// whose step has started.
func waitGateRunning(ctx context.Context, t *testing.T, n *realnode.Node, ns, pr string) *v1.TaskRun {
	t.Helper()
	for {
		list, err := n.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: "tekton.dev/pipelineTask=verify,tekton.dev/pipelineRun=" + pr})
		if err == nil && len(list.Items) == 1 {
			tr := &list.Items[0]
			if len(tr.Status.Steps) == 1 && (tr.Status.Steps[0].Running != nil || tr.Status.Steps[0].Terminated != nil) {
				return tr
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the gate of %s did not start", pr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stepLog reads the verify step's log once it holds the verdict (the
// kubelet writes it asynchronously).
func stepLog(ctx context.Context, t *testing.T, n *realnode.Node, ns, pod string, container ...string) []byte {
	t.Helper()
	var log []byte
	var err error
	c := "step-verify"
	if len(container) > 0 {
		c = container[0]
	}
	for range 50 {
		if log, err = n.Logs(ctx, ns, pod, c); err == nil && bytes.Contains(log, []byte("VERIFICATION ")) {
			return log
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("log of %s: %v", pod, err)
	return log
}

// gateResults returns the VERDICT and SUMMARY results of a verify TaskRun.
func gateResults(t *testing.T, tr *v1.TaskRun) (string, gate.Summary) {
	t.Helper()
	var verdict string
	var s gate.Summary
	for _, r := range tr.Status.Results {
		switch r.Name {
		case "VERDICT":
			verdict = r.Value.StringVal
		case "SUMMARY":
			if len(r.Value.StringVal) > gate.MaxSummary {
				t.Errorf("SUMMARY of %d bytes", len(r.Value.StringVal))
			}
			if err := json.Unmarshal([]byte(r.Value.StringVal), &s); err != nil {
				t.Errorf("SUMMARY %q: %v", r.Value.StringVal, err)
			}
		}
	}
	if verdict == "" {
		t.Errorf("TaskRun %s has no VERDICT: %+v", tr.Name, tr.Status.Results)
	}
	return verdict, s
}

// taskRunTimes: the TaskRun's and its step's wall time, as the status
// records them (whole seconds).
func taskRunTimes(tr *v1.TaskRun) string {
	var b strings.Builder
	if tr.Status.StartTime != nil && tr.Status.CompletionTime != nil {
		b.WriteString("TaskRun " + tr.Status.CompletionTime.Sub(tr.Status.StartTime.Time).String())
	}
	for _, s := range tr.Status.Steps {
		if s.Terminated != nil {
			b.WriteString(", step " + s.Terminated.FinishedAt.Sub(s.Terminated.StartedAt.Time).String())
		}
	}
	return b.String()
}

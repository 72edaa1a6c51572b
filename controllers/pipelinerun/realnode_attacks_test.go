package pipelinerun

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/layout/generate"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/verify"
)

// editedPipeline is the Pipeline as reviewed, from which the layout is
// generated: build writes out/app into the shared workspace (measured by
// the record pair), the catalog's verify Task gates build, and deploy
// reads the gated product from the workspace it binds read-only (also
// measured). @SHIP@ is deploy's script; @RO@ its workspace's readOnly.
const editedPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: edited
spec:
  params:
  - name: log-url
  - name: log-key
  workspaces:
  - name: source
  - name: layout
  tasks:
  - name: build
    workspaces:
    - {name: source, workspace: source}
    taskSpec:
      workspaces:
      - name: source
      steps:
      - name: measure-materials
        ref: {name: stepseal-record-start}
        params:
        - {name: step, value: write}
        - {name: paths, value: ["source=$(workspaces.source.path)"]}
      - name: write
        image: @BUSYBOX@
        script: mkdir -p $(workspaces.source.path)/out && echo app > $(workspaces.source.path)/out/app
      - name: measure-products
        ref: {name: stepseal-record-stop}
        params:
        - {name: step, value: write}
        - {name: paths, value: ["source=$(workspaces.source.path)"]}
  - name: verify
    runAfter: [build]
    taskRef:
      name: stepseal-verify
    workspaces:
    - {name: layout, workspace: layout}
    params:
    - {name: LOG_URL, value: $(params.log-url)}
    - {name: LOG_KEY, value: $(params.log-key)}
    - {name: STEPS, value: build}
  - name: deploy
    runAfter: [verify]
    workspaces:
    - {name: source, workspace: source}
    taskSpec:
      workspaces:
      - name: source
        readOnly: @RO@
      steps:
      - name: measure-materials
        ref: {name: stepseal-record-start}
        params:
        - {name: step, value: ship}
        - {name: paths, value: ["source=$(workspaces.source.path)"]}
      - name: ship
        image: @BUSYBOX@
        script: @SHIP@
      - name: measure-products
        ref: {name: stepseal-record-stop}
        params:
        - {name: step, value: ship}
        - {name: paths, value: ["source=$(workspaces.source.path)"]}
`

// attackEnv is what every attack case on the real node shares: the
// stepseal image built from this checkout, the catalog's record pair and
// verify Task in the namespace, a served log that the in-process TaskRun
// controller writes to (loopback) and the Pods read (the CNI gateway), and
// the TaskRun controller, trusting the stepseal image's recorders (and
// with pipelineRuns the PipelineRun controller, which signs skip records).
type attackEnv struct {
	n        *realnode.Node
	ns       string
	sysNS    string
	shared   *lifecycle.Shared
	busybox  string
	image    string
	pub      any
	logURL   string // for the test
	podURL   string // for the Pods
	logPub   string
	verifyTB []byte // the catalog's verify Task, its image this checkout's
}

func newAttackEnv(ctx context.Context, t *testing.T, pipelineRuns bool) *attackEnv {
	t.Helper()
	e := prepareAttackEnv(ctx, t, nil)
	e.runControllers(ctx, t, pipelineRuns)
	return e
}

// prepareAttackEnv is newAttackEnv up to starting the controllers, their
// settings with config on top; the served log also accepts documents
// signed by logKeys (a VSA's verifier key).
func prepareAttackEnv(ctx context.Context, t *testing.T, config map[string]string, logKeys ...crypto.PublicKey) *attackEnv {
	t.Helper()
	n := realnode.Get(t)
	e := &attackEnv{n: n, ns: n.Namespace(t)}
	sysNS := n.Namespace(t)
	e.sysNS = sysNS
	t.Setenv("SYSTEM_NAMESPACE", sysNS)
	e.busybox = n.Image(t, "BUSYBOX")
	registry, _, _ := strings.Cut(e.busybox, "/")
	e.image = realnode.StepsealImage(ctx, t, registry)

	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lo.Addr().String())
	logDir := t.TempDir()
	key, err := logserver.KeyInDir(logDir, "example.com/realnode-attacks")
	if err != nil {
		t.Fatal(err)
	}
	lp, err := os.ReadFile(filepath.Join(logDir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	e.logPub = strings.TrimSpace(string(lp))
	data := map[string]string{
		settings.KeyBackends: "logserver", settings.KeyLogServerURL: "http://" + lo.Addr().String() + "/",
		settings.KeyLogServerKey:   filepath.Join(logDir, "log.pub"),
		settings.KeyRetryBaseDelay: "100ms", settings.KeyRetryMaxDelay: "1s",
		settings.KeyRecordImages: e.image, settings.KeyMaxRetries: "3",
	}
	maps.Copy(data, config)
	pub := controllertest.Install(ctx, t, n.Kube, sysNS, data)
	e.pub = pub
	ctrlKey, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	keys := []signing.Verifier{ctrlKey}
	for _, k := range logKeys {
		v, err := signing.NewVerifier(k)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, v)
	}
	srv, err := logserver.Open(ctx, filepath.Join(logDir, "served"), key, logserver.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: srv.Handler()}
	go hs.Serve(lo)
	go func() {
		for ctx.Err() == nil {
			if l, err := net.Listen("tcp", net.JoinHostPort(bridgeGateway, port)); err == nil {
				hs.Serve(l)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { hs.Close(); srv.Close(context.Background()) })
	e.logURL = "http://" + lo.Addr().String() + "/"
	e.podURL = "http://" + net.JoinHostPort(bridgeGateway, port) + "/"

	root := filepath.Join("..", "..")
	for _, f := range []string{"stepseal-record-start", "stepseal-record-stop"} {
		b, err := os.ReadFile(filepath.Join(root, "stepaction", f, "0.1", f+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var sa v1beta1.StepAction
		if err := yaml.UnmarshalStrict(e.withImage(b), &sa); err != nil {
			t.Fatal(err)
		}
		sa.Namespace = e.ns
		if _, err := n.Tekton.TektonV1beta1().StepActions(e.ns).Create(ctx, &sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := os.ReadFile(filepath.Join(root, "task", "stepseal-verify", "0.1", "stepseal-verify.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e.verifyTB = e.withImage(tb)
	var task v1.Task
	if err := yaml.UnmarshalStrict(e.verifyTB, &task); err != nil {
		t.Fatal(err)
	}
	task.Namespace = e.ns
	if _, err := n.Tekton.TektonV1().Tasks(e.ns).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	return e
}

// runControllers starts the TaskRun controller (with pipelineRuns the
// PipelineRun controller too) for the test's namespace only: other
// packages' real-node tests run their own controllers on the same node.
func (e *attackEnv) runControllers(ctx context.Context, t *testing.T, pipelineRuns bool) {
	t.Helper()
	e.shared = controllertest.NewShared(t)
	ctors := []injection.ControllerConstructor{taskrun.NewControllerWithLogs(e.shared, e.n)}
	if pipelineRuns {
		ctors = append(ctors, NewController(e.shared))
	}
	controllertest.RunControllers(injection.WithNamespaceScope(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), e.ns), t, mustConfig(t, e.n), e.sysNS, nil, ctors...)
}

func (e *attackEnv) withImage(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("ko://github.com/stepseal/stepseal/images/stepseal"), []byte(e.image))
}

// load parses a Pipeline (with the verify Task beside it) as `stepseal
// layout create` would.
func (e *attackEnv) load(ctx context.Context, t *testing.T, pipeline string) *tekton.Spec {
	t.Helper()
	src := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(src, append([]byte(pipeline+"---\n"), e.verifyTB...), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// layoutConfigMap stores a signed layout and its owner's key as the gate's
// layout workspace reads them.
func (e *attackEnv) layoutConfigMap(ctx context.Context, t *testing.T, name string, sl controllertest.SignedLayout) {
	t.Helper()
	ownerPEM, err := signing.MarshalPublicKeyPEM(sl.OwnerPub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.Kube.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string]string{"root.layout": string(sl.Data), "owner.pub": string(ownerPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// sharedClaim makes a PersistentVolumeClaim bound to a hostPath volume of
// its own (the node has no provisioner), for a workspace that several
// TaskRuns of one PipelineRun share. It returns the volume's directory.
func (e *attackEnv) sharedClaim(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	size := resource.MustParse("10Mi")
	pvName := e.ns + "-" + name
	dirType := corev1.HostPathDirectory
	if _, err := e.n.Kube.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: e.ns, Name: name},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.n.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	empty := ""
	if _, err := e.n.Kube.CoreV1().PersistentVolumeClaims(e.ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &empty,
			VolumeName:       pvName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// finalVerify verifies a finished run's links, read from the served log,
// against the layout (stepseal verify --from's workflow).
func (e *attackEnv) finalVerify(ctx context.Context, t *testing.T, sl controllertest.SignedLayout, runID string) (*verify.Verdict, error) {
	t.Helper()
	run, err := logserver.OpenRun(ctx, e.logURL, e.logPub, runID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.Layout(ctx, sl.Data, []signing.Verifier{sl.Owner}, run.Links, verify.Options{RunID: runID, WithoutArtifactUnsafe: true})
	if v == nil {
		t.Fatalf("no verdict: %v", err)
	}
	return v, err
}

// dumpRun logs the TaskRuns and Events of a failed PipelineRun.
func (e *attackEnv) dumpRun(ctx context.Context, t *testing.T) {
	if list, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, tr := range list.Items {
			t.Logf("TaskRun %s: %v annotations %v", tr.Name, tr.Status.Conditions, tr.Annotations)
		}
	}
	if evs, err := e.n.Kube.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, ev := range evs.Items {
			t.Logf("event %s %s: %s", ev.InvolvedObject.Name, ev.Reason, ev.Message)
		}
	}
}

// TestRealNodeAttackEditAfterGate (the Tasks cases' T3): build writes
// out/app into a shared workspace, the gate in the middle verifies build
// and passes, then deploy — whose Task in the cluster was edited after the
// layout was made from the reviewed Pipeline (there it reads the
// workspace read-only; here it binds it writable and rewrites out/app) —
// edits the gated product. Both writes are measured in the Pods by the
// record pair and signed by the controller. The final verification of
// the whole run against the reviewed layout refuses it as an artifact-rule
// failure of the editing step, naming the product: deploy's products must
// MATCH build's, and the edited out/app falls through to DISALLOW *.
func TestRealNodeAttackEditAfterGate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, false)
	reviewed := strings.NewReplacer("@BUSYBOX@", e.busybox, "@RO@", "true", "@SHIP@", "cat $(workspaces.source.path)/out/app").Replace(editedPipeline)
	edited := strings.NewReplacer("@BUSYBOX@", e.busybox, "@RO@", "false", "@SHIP@", "echo evil > $(workspaces.source.path)/out/app").Replace(editedPipeline)
	sl := controllertest.ControllerLayout(t, e.load(ctx, t, reviewed), e.pub, false)
	e.layoutConfigMap(ctx, t, "edited-layout", sl)
	pl := e.load(ctx, t, edited).Pipeline.DeepCopy()
	pl.Namespace = e.ns
	if _, err := e.n.Tekton.TektonV1().Pipelines(e.ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.sharedClaim(ctx, t, "edited-source")
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "edited-1", Namespace: e.ns},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "edited"},
			Params:      v1.Params{{Name: "log-url", Value: str(e.podURL)}, {Name: "log-key", Value: str(e.logPub)}},
			Workspaces: []v1.WorkspaceBinding{
				{Name: "source", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "edited-source"}},
				{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "edited-layout"}}},
			},
		},
	}
	pr, err := e.n.Tekton.TektonV1().PipelineRuns(e.ns).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, e.n.Tekton, e.ns, pr.Name)
	if !done.IsSuccessful() {
		e.dumpRun(ctx, t)
		t.Fatalf("PipelineRun failed: %+v", done.Status.Conditions)
	}
	gateTR, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Get(ctx, pr.Name+"-verify", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, s := gateResults(t, gateTR); v != "PASSED" || s.Passed != 1 {
		t.Fatalf("the gate before the edit: VERDICT %s %+v\n%s", v, s, stepLog(ctx, t, e.n, e.ns, gateTR.Status.PodName))
	}
	if err := waitRunSigned(ctx, t, e, done, []string{"build.write", "verify.verify", "deploy.ship"}); err != nil {
		e.dumpRun(ctx, t)
		t.Fatal(err)
	}

	v, err := e.finalVerify(ctx, t, sl, string(done.UID))
	if err == nil {
		t.Fatal("the run with the gated product edited after the gate verifies")
	}
	var found bool
	for _, f := range v.Failures {
		t.Logf("failure: %v", f)
		var ar *verify.ArtifactRuleError
		if errors.As(f, &ar) && ar.Step == "deploy.ship" && ar.Kind == "product" && ar.Artifact == "source/out/app" {
			found = true
			const want = `step "deploy.ship": product "source/out/app" not allowed by rule DISALLOW * (changed since materials; MATCH source/** WITH PRODUCTS FROM build.write did not consume it: sha256 differs)`
			if f.Error() != want {
				t.Errorf("message %q, want %q", f, want)
			}
			if !errors.Is(f, verify.ErrArtifactRule) || !errors.Is(f, reject.ErrArtifactRule) {
				t.Errorf("%v is not an artifact-rule refusal", f)
			}
		}
	}
	if !found {
		t.Fatalf("no artifact-rule failure of deploy.ship naming product source/out/app: %v", err)
	}
	for _, s := range v.Steps {
		if s.Name == "build.write" && !s.Passed {
			t.Errorf("build.write, which the gate passed, fails in the final verification")
		}
	}
}

// waitRunSigned waits (up to a minute) until the served log holds a link
// of every step of the run (the controller signs each TaskRun after it
// finished), and returns the last error reading the log otherwise.
func waitRunSigned(ctx context.Context, t *testing.T, e *attackEnv, pr *v1.PipelineRun, steps []string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		run, err := logserver.OpenRun(ctx, e.logURL, e.logPub, string(pr.UID), "", nil)
		if err == nil {
			var names []string
			if names, err = run.Links.LinkNames(ctx); err == nil {
				var missing []string
				for _, s := range steps {
					if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, s+".") }) {
						missing = append(missing, s)
					}
				}
				if len(missing) == 0 {
					return nil
				}
				err = fmt.Errorf("no link of %v among %v", missing, names)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("run %s: %w", pr.Name, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// retriedPipeline: build has retries: 1; its measured step writes out/app
// and the task result out, and its first attempt ("bad") then fails, so
// Tekton retries the TaskRun in a new Pod with the same workspace.
const retriedPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: retried
spec:
  workspaces:
  - name: source
  tasks:
  - name: build
    retries: 1
    workspaces:
    - {name: source, workspace: source}
    taskSpec:
      workspaces:
      - name: source
      results:
      - name: out
      steps:
      - name: measure-materials
        ref: {name: stepseal-record-start}
        params:
        - {name: step, value: write}
        - {name: paths, value: ["source=$(workspaces.source.path)"]}
      - name: write
        image: @BUSYBOX@
        script: |
          mkdir -p $(workspaces.source.path)/out
          if [ "$(context.task.retry-count)" = 0 ]; then
            echo bad > $(workspaces.source.path)/out/app
            printf bad > $(results.out.path)
            exit 1
          fi
          echo good > $(workspaces.source.path)/out/app
          printf good > $(results.out.path)
      - name: measure-products
        ref: {name: stepseal-record-stop}
        params:
        - {name: step, value: write}
        - {name: paths, value: ["source=$(workspaces.source.path)"]}
`

// TestRealNodeAttackRetriedTask (T6): a pipeline task with retries: 1
// whose first attempt writes "bad" and fails. Tekton retries the TaskRun
// in a new Pod (status.retriesStatus holds the failed attempt); the
// controller signs the TaskRun once, when it is done, from status.steps —
// the final attempt only: one link of build.write, its products the
// retry's out/app and result, its materials including what the failed
// attempt left in the workspace (the generated layout allows that for a
// task with retries). The run verifies; nothing of the failed attempt is
// in the log, so no verdict can mix attempts.
func TestRealNodeAttackRetriedTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, false)
	spec := e.load(ctx, t, strings.ReplaceAll(retriedPipeline, "@BUSYBOX@", e.busybox))
	sl := controllertest.ControllerLayout(t, spec, e.pub, false)
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = e.ns
	if _, err := e.n.Tekton.TektonV1().Pipelines(e.ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.sharedClaim(ctx, t, "retried-source")
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "retried-1", Namespace: e.ns},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "retried"},
			Workspaces: []v1.WorkspaceBinding{
				{Name: "source", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "retried-source"}},
			},
		},
	}
	pr, err := e.n.Tekton.TektonV1().PipelineRuns(e.ns).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, e.n.Tekton, e.ns, pr.Name)
	if !done.IsSuccessful() {
		e.dumpRun(ctx, t)
		t.Fatalf("PipelineRun failed: %+v", done.Status.Conditions)
	}
	tr, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Get(ctx, pr.Name+"-build", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Status.RetriesStatus) != 1 || tr.Status.RetriesStatus[0].PodName == tr.Status.PodName {
		t.Fatalf("want one failed attempt in another Pod: retriesStatus %d, pods %q", len(tr.Status.RetriesStatus), tr.Status.PodName)
	}
	t.Logf("failed attempt in Pod %s, retry in Pod %s", tr.Status.RetriesStatus[0].PodName, tr.Status.PodName)
	if err := waitRunSigned(ctx, t, e, done, []string{"build.write"}); err != nil {
		e.dumpRun(ctx, t)
		t.Fatal(err)
	}

	run, err := logserver.OpenRun(ctx, e.logURL, e.logPub, string(done.UID), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	names, err := run.Links.LinkNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || !strings.HasPrefix(names[0], "build.write.") {
		t.Fatalf("links of the run: %v, want build.write's only", names)
	}
	data, err := run.Links.ReadLink(ctx, names[0])
	if err != nil {
		t.Fatal(err)
	}
	good, bad := sha256.Sum256([]byte("good\n")), sha256.Sum256([]byte("bad\n"))
	goodResult := sha256.Sum256([]byte("good"))
	var mb in_toto.Metablock
	if err := json.Unmarshal(data, &mb); err != nil {
		t.Fatal(err)
	}
	lb, _ := json.Marshal(mb.Signed)
	var l in_toto.Link
	if err := json.Unmarshal(lb, &l); err != nil {
		t.Fatal(err)
	}
	if got := l.Products["source/out/app"]["sha256"]; got != hex.EncodeToString(good[:]) {
		t.Errorf("product source/out/app = %s, want the retry's %x", got, good)
	}
	if got := l.Products["results/out"]["sha256"]; got != hex.EncodeToString(goodResult[:]) {
		t.Errorf("product results/out = %s, want the retry's %x (products %v)", got, goodResult, l.Products)
	}
	if got := l.Materials["source/out/app"]["sha256"]; got != hex.EncodeToString(bad[:]) {
		t.Errorf("material source/out/app = %s, want what the failed attempt left, %x", got, bad)
	}
	if v, err := e.finalVerify(ctx, t, sl, string(done.UID)); err != nil {
		for _, f := range v.Failures {
			t.Errorf("failure: %v", f)
		}
		t.Fatalf("the retried run does not verify: %v", err)
	}
}

// fanPipeline: build fans out over a matrix of two arches; each of its two
// TaskRuns writes its arch as the result out.
const fanPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: fan
spec:
  tasks:
  - name: build
    matrix:
      params:
      - name: arch
        value: [amd64, arm64]
    taskSpec:
      params:
      - name: arch
      results:
      - name: out
      steps:
      - name: compile
        image: @BUSYBOX@
        script: printf %s "$(params.arch)" > $(results.out.path)
`

// TestRealNodeAttackMatrixFanOut (T7): a matrix fan-out runs N TaskRuns
// for one pipeline task, and the controller signs each with links named
// for the same layout step (build.compile, one key). The layout generator
// refuses the Pipeline, naming the task (generate.ErrMatrix,
// reject.ErrUnsupported). The run on the node, verified against the layout
// of the same Pipeline without its matrix (as a hand-made layout would
// have it), is refused — never verified against one of the two: the log
// holds two different links named build.compile.<key>.link for the run, a
// verify.DuplicateLinkError (a disagreement, reject.ErrMismatch) in the
// verdict; the catalog's verify Task says FAILED with it, at once, rather
// than waiting or saying ERROR.
func TestRealNodeAttackMatrixFanOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, false)
	fan := strings.ReplaceAll(fanPipeline, "@BUSYBOX@", e.busybox)
	spec := e.load(ctx, t, fan)
	err := generateLayout(t, spec, e.pub)
	wantGen := `pipeline task "build": matrix fan-out is not supported: Tekton runs one TaskRun per combination and each signs links named build.<step>, ` +
		"so one layout step could not say which combination it verified; write one pipeline task per combination"
	if !errors.Is(err, generate.ErrMatrix) || !errors.Is(err, reject.ErrUnsupported) || !strings.HasSuffix(err.Error(), wantGen) {
		t.Fatalf("layout of the matrix Pipeline: %v, want ErrMatrix naming build", err)
	}
	one := e.load(ctx, t, strings.Replace(fan, "    matrix:\n      params:\n      - name: arch\n        value: [amd64, arm64]\n",
		"    params:\n    - name: arch\n      value: amd64\n", 1))
	sl := controllertest.ControllerLayout(t, one, e.pub, false)
	e.layoutConfigMap(ctx, t, "fan-layout", sl)
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = e.ns
	if _, err := e.n.Tekton.TektonV1().Pipelines(e.ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "fan-1", Namespace: e.ns}, Spec: v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{Name: "fan"}}}
	if pr, err = e.n.Tekton.TektonV1().PipelineRuns(e.ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, e.n.Tekton, e.ns, pr.Name)
	if !done.IsSuccessful() || len(done.Status.ChildReferences) != 2 {
		e.dumpRun(ctx, t)
		t.Fatalf("PipelineRun: %+v, children %+v", done.Status.Conditions, done.Status.ChildReferences)
	}
	for _, c := range done.Status.ChildReferences {
		kubetest.WaitTaskRunSigned(ctx, t, e.n.Tekton, e.ns, c.Name)
	}

	run, err := logserver.OpenRun(ctx, e.logURL, e.logPub, string(done.UID), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.Layout(ctx, sl.Data, []signing.Verifier{sl.Owner}, run.Links, verify.Options{RunID: string(done.UID), WithoutArtifactUnsafe: true})
	var dup *verify.DuplicateLinkError
	if v == nil || v.Passed || len(v.Failures) != 1 || !errors.As(v.Failures[0], &dup) || dup.Step != "build.compile" ||
		!errors.Is(err, verify.ErrDisagreement) || !errors.Is(err, reject.ErrMismatch) {
		t.Fatalf("the fanned-out run against a one-step layout: %v (verdict %+v)", err, v)
	}
	t.Logf("refused: %v", v.Failures[0])

	// The gate on the same run: FAILED at once, naming the step.
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }
	gtr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "fan-gate", Namespace: e.ns},
		Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "stepseal-verify"},
			Workspaces: []v1.WorkspaceBinding{{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "fan-layout"}}}},
			Params: v1.Params{{Name: "LOG_URL", Value: str(e.podURL)}, {Name: "LOG_KEY", Value: str(e.logPub)},
				{Name: "RUN_ID", Value: str(string(done.UID))}, {Name: "STRICT", Value: str("false")}}},
	}
	if _, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Create(ctx, gtr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gdone := realnode.WaitTaskRun(ctx, t, e.n.Tekton, e.ns, gtr.Name)
	verdict, sum := gateResults(t, gdone)
	log := stepLog(ctx, t, e.n, e.ns, gdone.Status.PodName)
	if verdict != "FAILED" || !strings.HasPrefix(sum.Note, `step "build.compile": run `+string(done.UID)+` has two different links named build.compile.`) {
		t.Fatalf("gate on the fanned-out run: %s %+v\n%s", verdict, sum, log)
	}
	if bytes.Contains(log, []byte("waiting up to")) && !bytes.Contains(log, []byte("VERIFICATION FAILED")) {
		t.Fatalf("the gate did not refuse:\n%s", log)
	}
}

// generateLayout runs the layout generator as ControllerLayout does and
// returns its error.
func generateLayout(t *testing.T, spec *tekton.Spec, pub any) error {
	t.Helper()
	f, err := layout.ParseFunctionaries([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nmetadata: {name: release}\nspec:\n  functionaries: [{name: controller}]\n  steps: [{match: \"*\", functionaries: [controller]}]\n"), "functionaries.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := signing.InTotoKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	_, err = generate.FromPipeline(spec, f, map[string]in_toto.Key{"controller": ck}, layout.Options{})
	return err
}

// skippedPipeline: deploy runs only when the param deploy is "yes"; the
// catalog's verify Task runs in finally, scoped to build and deploy.
const skippedPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: skipped
spec:
  params:
  - name: deploy
    default: "no"
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
  - name: deploy
    runAfter: [build]
    when:
    - input: $(params.deploy)
      operator: in
      values: ["yes"]
    taskSpec:
      steps:
      - name: push
        image: @BUSYBOX@
        script: echo pushing
  finally:
  - name: verify
    taskRef:
      name: stepseal-verify
    workspaces:
    - {name: layout, workspace: layout}
    params:
    - {name: LOG_URL, value: $(params.log-url)}
    - {name: LOG_KEY, value: $(params.log-key)}
    - {name: STEPS, value: "build,deploy"}
    - {name: WAIT, value: 10s}
    - {name: STRICT, value: "false"}
`

// TestRealNodeAttackWhenSkipped (T8): deploy is skipped by its when
// expression. The PipelineRun controller signs deploy.push's skip record
// when the whole PipelineRun has finished — after its finally tasks — so a
// gate in finally whose scope names the skippable task waits, then fails
// naming deploy.push (it never passes with the record missing); the
// verification of the finished run passes, deploy.push excused by its
// signed skip record (the layout's skip rule: the controller is the skip
// signer, the when expression is false on the recorded input).
func TestRealNodeAttackWhenSkipped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, true)
	spec := e.load(ctx, t, strings.ReplaceAll(skippedPipeline, "@BUSYBOX@", e.busybox))
	sl := controllertest.ControllerLayout(t, spec, e.pub, true)
	e.layoutConfigMap(ctx, t, "skipped-layout", sl)
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = e.ns
	if _, err := e.n.Tekton.TektonV1().Pipelines(e.ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "skipped-1", Namespace: e.ns},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "skipped"},
			Params:      v1.Params{{Name: "log-url", Value: str(e.podURL)}, {Name: "log-key", Value: str(e.logPub)}},
			Workspaces:  []v1.WorkspaceBinding{{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "skipped-layout"}}}},
		},
	}
	pr, err := e.n.Tekton.TektonV1().PipelineRuns(e.ns).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, e.n.Tekton, e.ns, pr.Name)
	if !done.IsSuccessful() || len(done.Status.SkippedTasks) != 1 || done.Status.SkippedTasks[0].Name != "deploy" {
		e.dumpRun(ctx, t)
		t.Fatalf("PipelineRun: %+v, skipped %+v", done.Status.Conditions, done.Status.SkippedTasks)
	}
	gateTR, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Get(ctx, pr.Name+"-verify", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	verdict, sum := gateResults(t, gateTR)
	t.Logf("finally gate: %s %+v", verdict, sum)
	if verdict != "FAILED" || strings.Join(sum.Missing, ",") != "deploy.push" {
		t.Errorf("finally gate scoped to a skipped task: VERDICT %s %+v, want FAILED missing deploy.push\n%s", verdict, sum, stepLog(ctx, t, e.n, e.ns, gateTR.Status.PodName))
	}
	kubetest.WaitPipelineRunSigned(ctx, t, e.n.Tekton, e.ns, pr.Name)
	v, err := e.finalVerify(ctx, t, sl, string(done.UID))
	if err != nil {
		for _, f := range v.Failures {
			t.Errorf("failure: %v", f)
		}
		t.Fatalf("the finished run with deploy skipped does not verify: %v", err)
	}
	for _, s := range v.Steps {
		t.Logf("step %s passed=%v skipped=%q", s.Name, s.Passed, s.Skipped)
		if s.Name == "deploy.push" && s.Skipped == "" {
			t.Errorf("deploy.push passed without its skip record: %+v", s)
		}
	}
}

// overwrittenPipeline: publish's push step writes the type-hinted
// IMAGE_URL/IMAGE_DIGEST of the image it "pushed" (digest of "pushed\n");
// a later step of the same Task rewrites IMAGE_DIGEST (digest of "other\n").
const overwrittenPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: overwritten
spec:
  tasks:
  - name: publish
    taskSpec:
      results:
      - name: IMAGE_URL
      - name: IMAGE_DIGEST
      steps:
      - name: push
        image: @BUSYBOX@
        script: |
          printf %s @REPO@ > $(results.IMAGE_URL.path)
          printf sha256:%s "$(echo pushed | sha256sum | cut -d' ' -f1)" > $(results.IMAGE_DIGEST.path)
      - name: later
        image: @BUSYBOX@
        script: printf sha256:%s "$(echo other | sha256sum | cut -d' ' -f1)" > $(results.IMAGE_DIGEST.path)
`

// TestRealNodeAttackResultOverwritten (T12): a later step of the publishing
// Task rewrites /tekton/results/IMAGE_DIGEST. Tekton reports the task
// result from the last write, and the controller records task results
// (and the image they name) as products of the last step that ran — the
// link cannot say which step wrote the file. Verified with the image that
// was pushed (its digest bound, as admission and `stepseal verify
// --artifact` do), the run is refused: the signed product is the
// rewritten digest (verify.ErrOutputArtifact, naming the image and
// publish.later). The trust boundary: verified with the rewritten digest,
// it passes — a step of the Task may choose the Task's results; only the
// image's own digest, bound at verification, tells them apart.
func TestRealNodeAttackResultOverwritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, false)
	spec := e.load(ctx, t, strings.NewReplacer("@BUSYBOX@", e.busybox, "@REPO@", realNodeRepo).Replace(overwrittenPipeline))
	sl := controllertest.ControllerLayout(t, spec, e.pub, false)
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = e.ns
	if _, err := e.n.Tekton.TektonV1().Pipelines(e.ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "overwritten-1", Namespace: e.ns}, Spec: v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{Name: "overwritten"}}}
	pr, err := e.n.Tekton.TektonV1().PipelineRuns(e.ns).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, e.n.Tekton, e.ns, pr.Name)
	if !done.IsSuccessful() {
		e.dumpRun(ctx, t)
		t.Fatalf("PipelineRun failed: %+v", done.Status.Conditions)
	}
	pushed, other := sha256.Sum256([]byte("pushed\n")), sha256.Sum256([]byte("other\n"))
	tr := kubetest.WaitTaskRunSigned(ctx, t, e.n.Tekton, e.ns, pr.Name+"-publish")
	for _, r := range tr.Status.Results {
		if r.Name == "IMAGE_DIGEST" && r.Value.StringVal != "sha256:"+hex.EncodeToString(other[:]) {
			t.Fatalf("Tekton's IMAGE_DIGEST %s, want the later step's", r.Value.StringVal)
		}
	}
	if err := waitRunSigned(ctx, t, e, done, []string{"publish.push", "publish.later"}); err != nil {
		t.Fatal(err)
	}
	logged, err := logserver.OpenRun(ctx, e.logURL, e.logPub, string(done.UID), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(d [32]byte) (*verify.Verdict, error) {
		return verify.Layout(ctx, sl.Data, []signing.Verifier{sl.Owner}, logged.Links, verify.Options{RunID: string(done.UID),
			Artifacts: map[string]run.DigestSet{realNodeRepo: {"sha256": hex.EncodeToString(d[:])}}})
	}
	v, err := check(pushed)
	var oe *verify.OutputArtifactError
	if v == nil || v.Passed || len(v.Failures) != 1 || !errors.As(v.Failures[0], &oe) || oe.Artifact != realNodeRepo || oe.Step != "publish.later" ||
		!errors.Is(err, verify.ErrOutputArtifact) || !errors.Is(err, reject.ErrMismatch) {
		t.Fatalf("verified with the pushed image: %v", err)
	}
	t.Logf("refused: %v", v.Failures[0])
	if _, err := check(other); err != nil {
		t.Fatalf("verified with the rewritten digest: %v", err)
	}
}

// replayPipeline: two tasks, each one step.
const replayPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: replay
spec:
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
`

// TestRealNodeAttackReplayedLinks (T4): two PipelineRuns, A and B, of one
// Pipeline, signed by the controller into the served log. A's link of
// build.compile submitted again to the log as run B's is indexed under
// the run ID signed into it (A's): B's links do not change and B still
// verifies. Copied under run B's ID into a store (a directory store, as
// `stepseal verify --links` or a tampered backend would hold it), it is
// refused naming the step and both runs (verify.ErrRunMismatch,
// reject.ErrMismatch).
func TestRealNodeAttackReplayedLinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e := newAttackEnv(ctx, t, false)
	spec := e.load(ctx, t, strings.ReplaceAll(replayPipeline, "@BUSYBOX@", e.busybox))
	sl := controllertest.ControllerLayout(t, spec, e.pub, false)
	pl := spec.Pipeline.DeepCopy()
	pl.Namespace = e.ns
	if _, err := e.n.Tekton.TektonV1().Pipelines(e.ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runs := map[string]*v1.PipelineRun{}
	for _, name := range []string{"replay-a", "replay-b"} {
		pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{Name: "replay"}}}
		if _, err := e.n.Tekton.TektonV1().PipelineRuns(e.ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"replay-a", "replay-b"} {
		done := realnode.WaitPipelineRun(ctx, t, e.n.Tekton, e.ns, name)
		if !done.IsSuccessful() {
			e.dumpRun(ctx, t)
			t.Fatalf("PipelineRun %s failed: %+v", name, done.Status.Conditions)
		}
		if err := waitRunSigned(ctx, t, e, done, []string{"build.compile", "report.summarize"}); err != nil {
			t.Fatal(err)
		}
		runs[name] = done
	}
	a, b := string(runs["replay-a"].UID), string(runs["replay-b"].UID)
	open := func(id string) (*logserver.Run, map[string][]byte) {
		r, err := logserver.OpenRun(ctx, e.logURL, e.logPub, id, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		names, err := r.Links.LinkNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		links := map[string][]byte{}
		for _, n := range names {
			if links[n], err = r.Links.ReadLink(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		return r, links
	}
	runA, linksA := open(a)
	_, linksB := open(b)
	var name string
	for n := range linksA {
		if strings.HasPrefix(n, "build.compile.") {
			name = n
		}
	}
	if name == "" || linksB[name] == nil || bytes.Equal(linksA[name], linksB[name]) {
		t.Fatalf("runs A and B: links %d and %d, build.compile %q", len(linksA), len(linksB), name)
	}

	// 1. A's link submitted to the log as run B's: indexed as A's.
	if _, err := runA.Store.Put(ctx, store.Entry{Kind: store.KindLink, Name: name, RunID: b, Data: linksA[name]}); err != nil {
		t.Logf("the log refused the replayed link: %v", err)
	}
	_, after := open(b)
	if len(after) != len(linksB) || !bytes.Equal(after[name], linksB[name]) {
		t.Fatalf("run B's links changed after A's link was submitted as B's: %d links", len(after))
	}
	if _, err := e.finalVerify(ctx, t, sl, b); err != nil {
		t.Fatalf("run B: %v", err)
	}

	// 2. Copied under run B's ID into a store.
	ds, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for n, d := range linksB {
		if n == name {
			d = linksA[name]
		}
		if _, err := ds.Put(ctx, store.Entry{Kind: store.KindLink, Name: n, RunID: b, Data: d}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := verify.Layout(ctx, sl.Data, []signing.Verifier{sl.Owner}, &verify.StoreLinks{Store: ds, RunID: b}, verify.Options{RunID: b, WithoutArtifactUnsafe: true})
	want := `step "build.compile": link ` + name + ` comes from run "` + a + `", expected run "` + b + `" (a link replayed from another run)`
	if v == nil || v.Passed || len(v.Failures) != 1 || v.Failures[0].Error() != want ||
		!errors.Is(err, verify.ErrRunMismatch) || !errors.Is(err, reject.ErrMismatch) {
		t.Fatalf("A's link copied under B's run ID: %v, want %s", err, want)
	}
	t.Logf("refused: %v", v.Failures[0])
}

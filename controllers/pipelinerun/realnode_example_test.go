package pipelinerun

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/publishtest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/tekton"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// exampleDir is the go-build example, as users read and run it.
var exampleDir = filepath.Join("..", "..", "examples", "go-build")

// The example's Tasks' images, which the test replaces with the Go image
// built on the node (the node has no internet).
var exampleImages = []string{"docker.io/library/golang:1.26", "docker.io/library/alpine:3.20"}

// exampleSourceDir is where the example's source lies in the Go image: the
// fetch Task copies it from there (its local stand-in for git-clone).
const exampleSourceDir = "/opt/go-build/src"

// TestRealNodeExampleGoBuild runs examples/go-build on the real Tekton of
// the node, in ONE PipelineRun: the example's Pipeline and Tasks as users
// read them (only their images replaced by a Go toolchain image built on
// the node from the host's toolchain, holding the example's source, and
// each step put between the catalog's record pair), then
// the catalog's stepseal-publish Task (the archive, encrypted to the
// platform policy's platform, signed, pushed through a TLS registry proxy
// with basic authentication on the Pod network) and the catalog's
// stepseal-verify Task as the gate over every earlier task. The stepseal
// controllers run in-process: they sign every TaskRun and the PipelineRun
// into a served log (which the gate reads) and a directory store, and sign
// the VSA of the published image against the layout a TUF repository
// releases for the pipeline.
//
// It asserts: the PipelineRun succeeds; every TaskRun and the PipelineRun
// are signed by the controller; the links carry the files the record pair
// measured (the archive's digest is the run's archive-sha256 result); the
// gate says VERDICT=PASSED over the six
// steps; the published image verifies with pkg/publish; the controller's
// VSA for the published digest verifies as admission verifies it (vsa.Verify
// with the verifier key, verifier ID, subject digest, resource URI and
// layout digest) and with `slsa-verifier verify-vsa`. It measures the gate
// TaskRun's wall time against `stepseal verify` alone on the same inputs,
// and checks its Pod's requests (100m CPU, 128Mi) and that it did not OOM.
func TestRealNodeExampleGoBuild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 13*time.Minute)
	defer cancel()
	storeDir := t.TempDir()
	vsaSecret, vsaPub := controllertest.SigningSecret(t, "vsa-key", "pw2")
	e := prepareAttackEnv(ctx, t, map[string]string{
		settings.KeyBackends: "dir,logserver", settings.KeyStoreDir: storeDir,
		settings.KeyVSAEnabled: "true", settings.KeyVSAVerifierID: testVerifierID, settings.KeyVSASecret: "vsa-key",
	}, vsaPub)
	n, ns := e.n, e.ns
	kube := n.Kube.CoreV1()

	// The Go image: built from the host's toolchain (cached in the node's
	// registry), plus the example's source.
	goImage := realnode.GoImage(ctx, t, n)
	image := realnode.WithDir(ctx, t, goImage, filepath.Join(exampleDir, "src"), exampleSourceDir)
	t.Logf("Go image %s", image)

	// The registry the publish Task pushes to: a registry on loopback
	// behind a TLS proxy requiring basic authentication on the Pod network's
	// gateway.
	ensureBridge(ctx, t, e)
	up := testregistry.StartServer(t)
	const user, password = "publisher", "registry password"
	proxy := publishtest.StartProxy(t, up.Host, publishtest.ProxyOptions{Addr: net.JoinHostPort(bridgeGateway, "0"), TLS: true, User: user, Password: password})
	fx := publishtest.New(t)
	dockerConfig, _ := json.Marshal(map[string]any{"auths": map[string]any{proxy.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}}})
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "stepseal-platform-policy"}, BinaryData: map[string][]byte{publishtest.PolicyFile: fx.Files[publishtest.PolicyFile], publishtest.OwnerFile: fx.Files[publishtest.OwnerFile]}},
		{ObjectMeta: metav1.ObjectMeta{Name: "registry-ca"}, Data: map[string]string{"ca.crt": string(proxy.CAPEM)}},
	} {
		if _, err := kube.ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "stepseal-publisher"}, Data: map[string][]byte{publishtest.KeyFile: fx.Files[publishtest.KeyFile], publishtest.PasswordFile: fx.Files[publishtest.PasswordFile]}},
		{ObjectMeta: metav1.ObjectMeta{Name: "registry-credentials"}, Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: dockerConfig}},
	} {
		if _, err := kube.Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The Pipeline: the example's, then publish and the gate. Its Tasks:
	// the example's with the Go image, each step between the record pair,
	// and the catalog's.
	pl := examplePipeline(t)
	var taskDocs [][]byte
	files, err := filepath.Glob(filepath.Join(exampleDir, "tasks", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the example's Tasks: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range exampleImages {
			b = bytes.ReplaceAll(b, []byte(img), []byte(image))
		}
		taskDocs = append(taskDocs, recorded(t, b, pl))
	}
	pb, err := os.ReadFile(filepath.Join(root(), "task", "stepseal-publish", "0.1", "stepseal-publish.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	taskDocs = append(taskDocs, e.withImage(pb), e.verifyTB)
	plb, err := yaml.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(src, bytes.Join(append([][]byte{plb}, taskDocs...), []byte("\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := tekton.Load(ctx, src, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range taskDocs[:len(taskDocs)-1] { // the verify Task is there already
		var task v1.Task
		if err := yaml.UnmarshalStrict(b, &task); err != nil {
			t.Fatal(err)
		}
		task.Namespace = ns
		if _, err := n.Tekton.TektonV1().Tasks(ns).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pl.Namespace = ns
	if _, err := n.Tekton.TektonV1().Pipelines(ns).Create(ctx, pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The layout of the whole Pipeline, the controller performing every
	// step: for the gate in a ConfigMap with its owner's key, for the
	// controller's VSA released by TUF as layouts/go-build.layout.
	owner := signingtest.Signer(t)
	sl := controllertest.ControllerLayoutBy(t, spec, e.pub, owner)
	e.layoutConfigMap(ctx, t, "go-build-layout", sl)
	trustURL, trustRoot := serveTUF(t, owner, map[string][]byte{"layouts/go-build.layout": sl.Data})
	vsaSecret.Namespace, vsaSecret.ResourceVersion = e.sysNS, ""
	if _, err := kube.Secrets(e.sysNS).Create(ctx, vsaSecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := kube.ConfigMaps(e.sysNS).Get(ctx, settings.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[settings.KeyTrustURL], cm.Data[settings.KeyTrustRoot], cm.Data[settings.KeyTrustCache] = trustURL, string(trustRoot), t.TempDir()
	if _, err := kube.ConfigMaps(e.sysNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.runControllers(ctx, t, true)
	for deadline := time.Now().Add(30 * time.Second); e.shared.Trust() == nil || e.shared.Trust().Root() == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the controller's trust root was not refreshed within 30 s")
		}
	}

	// No affinity assistant: the node is one, and Tekton v1.15's assistant
	// for two workspaces on one claim is not the one the TaskRuns' Pods ask
	// for (they stay Pending). Restored when the test ends.
	noAffinityAssistant(ctx, t, n)

	// The run.
	// One claim for both workspaces, a directory each: Tekton's affinity
	// assistant refuses a TaskRun binding two claims (build binds both).
	claimDir := e.sharedClaim(ctx, t, "workspaces")
	for _, sub := range []string{"source", "dist"} {
		if err := os.Mkdir(filepath.Join(claimDir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(claimDir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	str := func(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }
	target := proxy.Host + "/demo/hello:v1"
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "go-build-1", Namespace: ns},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "go-build"},
			// publish runs as 65532: the key Secret's files (0400) become
			// group-readable by fsGroup (as the Task's tests/run.yaml does).
			TaskRunSpecs: []v1.PipelineTaskRunSpec{{PipelineTaskName: "publish", PodTemplate: &pod.PodTemplate{
				SecurityContext: &corev1.PodSecurityContext{FSGroup: ptr(int64(65532))}}}},
			Params: v1.Params{{Name: "source-dir", Value: str(exampleSourceDir)}, {Name: "image", Value: str(target)},
				{Name: "log-url", Value: str(e.podURL)}, {Name: "log-key", Value: str(e.logPub)}},
			Workspaces: []v1.WorkspaceBinding{
				{Name: "source", SubPath: "source", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "workspaces"}},
				{Name: "dist", SubPath: "dist", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "workspaces"}},
				{Name: "policy", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "stepseal-platform-policy"}}},
				{Name: "signing-key", Secret: &corev1.SecretVolumeSource{SecretName: "stepseal-publisher", DefaultMode: ptr(int32(0o400))}},
				{Name: "dockerconfig", Secret: &corev1.SecretVolumeSource{SecretName: "registry-credentials", Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}}},
				{Name: "registry-ca", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "registry-ca"}}},
				{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "go-build-layout"}}},
			},
		},
	}
	start := time.Now()
	if _, err := n.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := realnode.WaitPipelineRun(ctx, t, n.Tekton, ns, pr.Name)
	t.Logf("PipelineRun done in %.1fs", time.Since(start).Seconds())
	trs, err := n.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pr.Name})
	if err != nil {
		t.Fatal(err)
	}
	byTask := map[string]*v1.TaskRun{}
	for i := range trs.Items {
		tr := &trs.Items[i]
		byTask[tr.Labels["tekton.dev/pipelineTask"]] = tr
		t.Logf("TaskRun %s: %s", tr.Name, taskRunTimes(tr))
	}
	if !done.IsSuccessful() {
		for _, tr := range trs.Items {
			t.Logf("TaskRun %s: %v", tr.Name, tr.Status.Conditions)
			for _, st := range tr.Status.Steps {
				if b, err := n.Logs(ctx, ns, tr.Status.PodName, "step-"+st.Name); err == nil {
					t.Logf("  step %s:\n%s", st.Name, b)
				}
			}
		}
		e.dumpRun(ctx, t)
		t.Fatalf("PipelineRun failed: %+v", done.Status.Conditions)
	}

	// Every TaskRun and the PipelineRun signed by the controller.
	wantTasks := []string{"fetch", "test", "build", "package", "publish", "verify"}
	if len(byTask) != len(wantTasks) {
		t.Fatalf("TaskRuns of the run: %v, want %v", byTask, wantTasks)
	}
	for _, pt := range wantTasks {
		tr := byTask[pt]
		if tr == nil {
			t.Fatalf("no TaskRun for pipeline task %s", pt)
		}
		waitTaskRunSigned(ctx, t, n, ns, tr.Name)
	}
	signed := waitPipelineRunVSA(ctx, t, n, ns, pr.Name)

	// The gate: PASSED over the six steps before it.
	gate := byTask["verify"]
	verdict, summary := gateResults(t, gate)
	gateLog := stepLog(ctx, t, n, ns, gate.Status.PodName)
	if verdict != "PASSED" || summary.RunID != string(done.UID) || summary.Steps != 6 || summary.Passed != 6 {
		t.Fatalf("gate: VERDICT %s, SUMMARY %+v\n%s", verdict, summary, gateLog)
	}

	// The record pair measured the workspaces: what fetch copied, what
	// build made and the archive whose digest is the run's result.
	links := exampleLinks(ctx, t, e, string(done.UID))
	var archive string
	for _, r := range done.Status.Results {
		if r.Name == "archive-sha256" {
			archive = r.Value.StringVal
		}
	}
	for step, want := range map[string]map[string]string{
		"fetch.copy":    {"source/main.go": ""},
		"build.compile": {"dist/hello": ""},
		"package.tar":   {"dist/app.tar.gz": archive},
	} {
		l, ok := links[step]
		if !ok {
			t.Fatalf("no link of %s in the served log (%d links)", step, len(links))
		}
		for f, sum := range want {
			got := l.Products[f]["sha256"]
			if got == "" || sum != "" && got != sum {
				t.Errorf("link %s: product %s sha256 %q, want %q (products %v)", step, f, got, sum, l.Products)
			}
		}
	}
	if m := links["test.unit"].Materials["source/main.go"]["sha256"]; m == "" || m != links["fetch.copy"].Products["source/main.go"]["sha256"] {
		t.Errorf("test.unit's material source/main.go %q is not what fetch.copy produced", m)
	}

	// The published image: the results, and pkg/publish's check.
	res := map[string]string{}
	for _, r := range byTask["publish"].Status.Results {
		res[r.Name] = r.Value.StringVal
	}
	digest := res[publish.ResultImageDigest]
	ref, err := name.NewDigest(proxy.Host + "/demo/hello@" + digest)
	if err != nil {
		t.Fatalf("IMAGE_DIGEST %q: %v", digest, err)
	}
	if res[publish.ResultImageURL] != target {
		t.Errorf("IMAGE_URL %q, want %q", res[publish.ResultImageURL], target)
	}
	checkPublished(ctx, t, up.Host+"/demo/hello:v1", digest, fx)

	// The controller's VSA of the published digest, as admission checks it,
	// then with slsa-verifier.
	ds, err := dirstore.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	vd := signed.Annotations[annotations.VSA]
	entry, err := ds.Fetch(ctx, vd)
	if err != nil {
		t.Fatalf("VSA %s not in the store: %v", vd, err)
	}
	vsaVerifier, err := signing.NewVerifier(vsaPub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := vsa.Verify(ctx, entry.Data, vsa.Expect{Key: vsaVerifier, VerifierID: testVerifierID, SubjectDigest: digest,
		ResourceURI:  vsa.ResourceURI(ref.Context().RegistryStr(), ref.Context().RepositoryStr()),
		PolicyDigest: "sha256:" + hex.EncodeToString(sha256Of(sl.Data))})
	if err != nil {
		t.Fatalf("the controller's VSA of %s: %v", ref, err)
	}
	if p := got.Predicate.GetPolicy().GetUri(); !strings.HasPrefix(p, "tuf:layouts/go-build.layout?") {
		t.Errorf("VSA policy.uri %q", p)
	}
	slsaVerifierAccepts(t, entry.Data, vsaPub, ref, testVerifierID)

	// The gate's cost: its TaskRun against `stepseal verify` alone on the
	// same inputs; its requests, honoured, and no OOM.
	cli := filepath.Join(t.TempDir(), "stepseal")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "github.com/stepseal/stepseal/images/stepseal").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lay := t.TempDir()
	ownerPEM, err := signing.MarshalPublicKeyPEM(sl.OwnerPub)
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{"root.layout": sl.Data, "owner.pub": ownerPEM} {
		if err := os.WriteFile(filepath.Join(lay, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var best time.Duration
	for range 3 {
		cliStart := time.Now()
		out, err := exec.CommandContext(ctx, cli, "verify", "--from", e.logURL, "--log-key", e.logPub, "--run-id", string(done.UID),
			"--layout-dir", lay, "--steps", "fetch,test,build,package,publish").CombinedOutput()
		if err != nil {
			t.Fatalf("stepseal verify alone: %v\n%s", err, out)
		}
		if d := time.Since(cliStart); best == 0 || d < best {
			best = d
		}
	}
	pod, err := kube.Pods(ns).Get(ctx, gate.Status.PodName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name != "step-verify" {
			continue
		}
		if cpu, mem := c.Resources.Requests.Cpu().String(), c.Resources.Requests.Memory().String(); cpu != "100m" || mem != "128Mi" {
			t.Errorf("the gate's step requests cpu %s memory %s, want 100m and 128Mi", cpu, mem)
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.Reason == "OOMKilled" {
			t.Errorf("container %s was OOM-killed", cs.Name)
		}
	}
	t.Logf("the gate in the run: %s, Pod %s (QoS %s)", taskRunTimes(gate), podTimes(pod), pod.Status.QOSClass)

	// The same verification of the finished run as TaskRuns of the Task,
	// each timed from its creation to its end as the test sees it (polled
	// every 200 ms; Tekton's and the kubelet's timestamps are whole
	// seconds).
	var runs []string
	for i := range 3 {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: "verify-again-" + strconv.Itoa(i), Namespace: ns},
			Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "stepseal-verify"},
				Workspaces: []v1.WorkspaceBinding{{Name: "layout", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "go-build-layout"}}}},
				Params: v1.Params{{Name: "LOG_URL", Value: str(e.podURL)}, {Name: "LOG_KEY", Value: str(e.logPub)}, {Name: "RUN_ID", Value: str(string(done.UID))},
					{Name: "WAIT", Value: str("0s")}, {Name: "STEPS", Value: str("fetch,test,build,package,publish")}}},
		}
		trStart := time.Now()
		if _, err := n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		again := realnode.WaitTaskRun(ctx, t, n.Tekton, ns, tr.Name)
		wall := time.Since(trStart)
		if v, _ := gateResults(t, again); !again.IsSuccessful() || v != "PASSED" {
			t.Fatalf("verify of the finished run as a TaskRun: %s %+v", v, again.Status.Conditions)
		}
		p, err := kube.Pods(ns).Get(ctx, again.Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, fmt.Sprintf("%.1fs (%s, Pod %s)", wall.Seconds(), taskRunTimes(again), podTimes(p)))
	}
	t.Logf("verify Task on the finished run, created → done: %s; stepseal verify alone on the same run (best of 3): %.3fs; load average %s",
		strings.Join(runs, "; "), best.Seconds(), loadAverage())
}

// examplePipeline is the example's Pipeline, then publish (its archive)
// and verify (the gate, over every earlier task).
func examplePipeline(t *testing.T) *v1.Pipeline {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(exampleDir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pl v1.Pipeline
	if err := yaml.UnmarshalStrict(b, &pl); err != nil {
		t.Fatal(err)
	}
	ws := func(n string) v1.PipelineWorkspaceDeclaration { return v1.PipelineWorkspaceDeclaration{Name: n} }
	bind := func(n, w string) v1.WorkspacePipelineTaskBinding {
		return v1.WorkspacePipelineTaskBinding{Name: n, Workspace: w}
	}
	param := func(n, v string) v1.Param { return v1.Param{Name: n, Value: *v1.NewStructuredValues(v)} }
	pl.Spec.Params = append(pl.Spec.Params, v1.ParamSpec{Name: "image"}, v1.ParamSpec{Name: "log-url"}, v1.ParamSpec{Name: "log-key"})
	pl.Spec.Workspaces = append(pl.Spec.Workspaces, ws("policy"), ws("signing-key"), ws("dockerconfig"), ws("registry-ca"), ws("layout"))
	pl.Spec.Tasks = append(pl.Spec.Tasks,
		v1.PipelineTask{
			Name: "publish", RunAfter: []string{"package"}, TaskRef: &v1.TaskRef{Name: "stepseal-publish"},
			Params: v1.Params{param("IMAGE", "$(params.image)"), param("ARTIFACT", "app.tar.gz")},
			Workspaces: []v1.WorkspacePipelineTaskBinding{bind("source", "dist"), bind("policy", "policy"), bind("signing-key", "signing-key"),
				bind("dockerconfig", "dockerconfig"), bind("ssl-ca-directory", "registry-ca")},
		},
		v1.PipelineTask{
			Name: "verify", RunAfter: []string{"publish"}, TaskRef: &v1.TaskRef{Name: "stepseal-verify"},
			Params: v1.Params{param("LOG_URL", "$(params.log-url)"), param("LOG_KEY", "$(params.log-key)"),
				param("STEPS", "fetch,test,build,package,publish")},
			Workspaces: []v1.WorkspacePipelineTaskBinding{bind("layout", "layout")},
		})
	return &pl
}

// checkPublished checks the image tag (on the registry behind the proxy)
// points to digest and verifies with pkg/publish: signed by the publisher,
// encrypted to the policy's platform.
func checkPublished(ctx context.Context, t *testing.T, tag, digest string, fx *publishtest.Fixture) {
	t.Helper()
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := c.Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("the tag was not pushed: %v", err)
	}
	if tagged.DigestStr() != digest {
		t.Errorf("IMAGE_DIGEST %q, the registry's tag points to %s", digest, tagged.DigestStr())
	}
	ck, err := publish.Check(ctx, c, tagged, publish.CheckOptions{Key: fx.Publisher.Public(), Policy: fx.Policy})
	if err != nil {
		t.Fatalf("publish.Check %s: %v", tagged, err)
	}
	if !ck.Encrypted {
		t.Error("published in the clear; the policy says encrypt to eu")
	}
}

// recorded returns the Task of b with each of its steps between the
// catalog's record pair, which measures the Task's workspaces under the
// names of the pipeline workspaces pl binds them to (the names of the
// generated layout's rules).
func recorded(t *testing.T, b []byte, pl *v1.Pipeline) []byte {
	t.Helper()
	var task v1.Task
	if err := yaml.UnmarshalStrict(b, &task); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, pt := range pl.Spec.Tasks {
		if pt.TaskRef == nil || pt.TaskRef.Name != task.Name {
			continue
		}
		for _, w := range pt.Workspaces {
			paths = append(paths, w.Workspace+"=$(workspaces."+w.Name+".path)")
		}
	}
	if len(paths) == 0 {
		t.Fatalf("Task %s: no pipeline task binds its workspaces", task.Name)
	}
	var steps []v1.Step
	for _, st := range task.Spec.Steps {
		params := v1.Params{{Name: "step", Value: *v1.NewStructuredValues(st.Name)}, {Name: "paths", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: paths}}}
		steps = append(steps,
			v1.Step{Name: st.Name + "-materials", Ref: &v1.Ref{Name: tekton.RecordStartStepAction}, Params: params},
			st,
			v1.Step{Name: st.Name + "-products", Ref: &v1.Ref{Name: tekton.RecordStopStepAction}, Params: params})
	}
	task.Spec.Steps = steps
	out, err := yaml.Marshal(&task)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exampleLinks reads the run's links from the served log: the link of
// each layout step, by step name.
func exampleLinks(ctx context.Context, t *testing.T, e *attackEnv, runID string) map[string]in_toto.Link {
	t.Helper()
	run, err := logserver.OpenRun(ctx, e.logURL, e.logPub, runID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	names, err := run.Links.LinkNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]in_toto.Link{}
	for _, n := range names {
		data, err := run.Links.ReadLink(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var mb in_toto.Metablock
		if err := json.Unmarshal(data, &mb); err != nil {
			t.Fatalf("link %s: %v", n, err)
		}
		lb, _ := json.Marshal(mb.Signed)
		var l in_toto.Link
		if err := json.Unmarshal(lb, &l); err != nil {
			t.Fatalf("link %s: %v", n, err)
		}
		out[l.Name] = l
	}
	return out
}

func root() string { return filepath.Join("..", "..") }

func ptr[T any](v T) *T { return &v }

// ensureBridge makes sure the node's CNI bridge has its gateway address
// (the first Pod creates it), so that a server can listen on it.
func ensureBridge(ctx context.Context, t *testing.T, e *attackEnv) {
	t.Helper()
	has := func() bool {
		ifc, err := net.InterfaceByName("stepseal0")
		if err != nil {
			return false
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == bridgeGateway {
				return true
			}
		}
		return false
	}
	if has() {
		return
	}
	tr := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: "warm-up", Namespace: e.ns}, Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Name: "true", Image: e.busybox, Command: []string{"true"}}}}}}
	if _, err := e.n.Tekton.TektonV1().TaskRuns(e.ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	realnode.WaitTaskRun(ctx, t, e.n.Tekton, e.ns, tr.Name)
	if !has() {
		t.Fatalf("the stepseal0 bridge has no address %s after a Pod ran", bridgeGateway)
	}
}

// noAffinityAssistant sets Tekton's feature flag coschedule to "disabled"
// until the test ends.
func noAffinityAssistant(ctx context.Context, t *testing.T, n *realnode.Node) {
	t.Helper()
	cms := n.Kube.CoreV1().ConfigMaps("tekton-pipelines")
	cm, err := cms.Get(ctx, "feature-flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old, had := cm.Data["coschedule"]
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["coschedule"] = "disabled"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cm, err := cms.Get(ctx, "feature-flags", metav1.GetOptions{})
		if err != nil {
			t.Errorf("restoring coschedule: %v", err)
			return
		}
		if had {
			cm.Data["coschedule"] = old
		} else {
			delete(cm.Data, "coschedule")
		}
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Errorf("restoring coschedule: %v", err)
		}
	})
	time.Sleep(time.Second) // Tekton's controller watches the ConfigMap
}

// waitTaskRunSigned waits until the controller signed the TaskRun
// (stepseal.dev/signed=true).
func waitTaskRunSigned(ctx context.Context, t *testing.T, n *realnode.Node, ns, name string) {
	t.Helper()
	for {
		tr, err := n.Tekton.TektonV1().TaskRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		switch tr.Annotations[annotations.Signed] {
		case annotations.SignedTrue:
			return
		case annotations.SignedFailed:
			t.Fatalf("TaskRun %s: signed=failed: %s", name, tr.Annotations[annotations.Error])
		}
		select {
		case <-ctx.Done():
			t.Fatalf("TaskRun %s not signed: annotations %v", name, tr.Annotations)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitPipelineRunVSA waits until the controller signed the PipelineRun and
// annotated its VSA, and returns it.
func waitPipelineRunVSA(ctx context.Context, t *testing.T, n *realnode.Node, ns, name string) *v1.PipelineRun {
	t.Helper()
	for {
		pr, err := n.Tekton.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Annotations[annotations.Signed] == annotations.SignedFailed {
			t.Fatalf("PipelineRun %s: signed=failed: %s", name, pr.Annotations[annotations.Error])
		}
		if pr.Annotations[annotations.Signed] == annotations.SignedTrue && pr.Annotations[annotations.VSA] != "" {
			return pr
		}
		select {
		case <-ctx.Done():
			if evs, err := n.Kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, e := range evs.Items {
					t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
				}
			}
			t.Fatalf("PipelineRun %s: not signed with a VSA: annotations %v", name, pr.Annotations)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// podTimes is the Pod's wall time: its start to its last container's end.
func podTimes(p *corev1.Pod) string {
	if p.Status.StartTime == nil {
		return "not started"
	}
	var end time.Time
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(end) {
			end = term.FinishedAt.Time
		}
	}
	if end.IsZero() {
		return "not finished"
	}
	return end.Sub(p.Status.StartTime.Time).String()
}

// loadAverage is the host's 1, 5 and 15 minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

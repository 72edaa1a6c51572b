package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/internal/publishtest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/publish"
)

const koPlaceholder = "ko://github.com/stepseal/stepseal/images/stepseal"

var publishTaskDir = filepath.Join("..", "..", "task", "stepseal-publish", "0.1")

// TestRealNodePublishTask runs the catalog's stepseal-publish Task
// (tests/run.yaml) in a real Pod made by Tekton: the stepseal image built
// from this checkout, the artifact from a ConfigMap workspace, the signed
// platform policy from another, the publisher's cosign-encrypted key and
// its password from a Secret workspace, registry credentials from a
// dockerconfig Secret. Pods cannot reach the node's registry (it listens on
// the host's loopback, for containerd only), so the test puts a TLS proxy
// that requires basic authentication and counts requests on the Pod
// network's gateway (the stepseal0 bridge), in front of a registry of its
// own on loopback; the Pod trusts the proxy's CA through the Task's
// ssl-ca-directory workspace.
//
// Then: the results are what was pushed; the image verifies on the host
// with pkg/publish (signature by the publisher, encrypted to exactly the
// policy's platform) and with cosign; Chains' formatter names it; the key
// is mounted read-only into the stepseal step only and never printed. A
// second TaskRun to a repository no rule covers fails with stepseal's
// message, and the registry saw no request at all.
func TestRealNodePublishTask(t *testing.T) {
	n := realnode.Get(t)
	ns := n.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	busybox := n.Image(t, "BUSYBOX")
	nodeRegistry, _, _ := strings.Cut(busybox, "/")
	image := realnode.StepsealImage(ctx, t, nodeRegistry)
	gw := podGateway(ctx, t, n, ns, busybox)
	up := testregistry.StartServer(t)
	const user, password = "publisher", "registry password"
	proxy := publishtest.StartProxy(t, up.Host, publishtest.ProxyOptions{Addr: net.JoinHostPort(gw, "0"), TLS: true, User: user, Password: password})
	t.Logf("stepseal image %s; registry %s behind %s", image, up.Host, proxy.Host)

	fx := publishtest.New(t)
	content := []byte("published from a real Pod\n")
	dockerConfig, _ := json.Marshal(map[string]any{"auths": map[string]any{proxy.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}}})
	kube := n.Kube.CoreV1()
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "publish-test-source"}, BinaryData: map[string][]byte{"app.txt": content}},
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
	b, err := os.ReadFile(filepath.Join(publishTaskDir, "stepseal-publish.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var task v1.Task
	if err := yaml.UnmarshalStrict(bytes.ReplaceAll(b, []byte(koPlaceholder), []byte(image)), &task); err != nil {
		t.Fatal(err)
	}
	task.Namespace = ns
	if _, err := n.Tekton.TektonV1().Tasks(ns).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ref := proxy.Host + "/demo/app:v1"
	start := time.Now()
	done := runPublish(ctx, t, n, ns, "publish-ok", ref)
	t.Logf("TaskRun done in %.1fs", time.Since(start).Seconds())
	logs := stepLog(ctx, t, n, done)
	if !done.IsSuccessful() {
		t.Fatalf("TaskRun failed: %+v\nrequests %v\nlog:\n%s", done.Status.Conditions, proxy.Requests(), logs)
	}
	for _, secret := range [][]byte{fx.Files[publishtest.KeyFile], []byte(publishtest.Password), []byte("PRIVATE KEY"), []byte(password)} {
		if bytes.Contains(logs, secret) {
			t.Errorf("the step's log shows a secret (%.20q…)", secret)
		}
	}

	// Results.
	res := map[string]v1.ResultValue{}
	for _, r := range done.Status.Results {
		res[r.Name] = r.Value
	}
	digest := res[publish.ResultImageDigest].StringVal
	if got := res[publish.ResultImageURL].StringVal; got != ref {
		t.Errorf("IMAGE_URL %q, want %q", got, ref)
	}
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	tag, err := c.ParseReference(up.Host + "/demo/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := c.Resolve(ctx, tag)
	if err != nil {
		t.Fatalf("the tag was not pushed: %v", err)
	}
	if tagged.DigestStr() != digest {
		t.Errorf("IMAGE_DIGEST %q, the registry's tag points to %s", digest, tagged.DigestStr())
	}
	sum := sha256.Sum256(content)
	want := map[string]string{"uri": "oci://" + proxy.Host + "/demo/app@" + digest, "digest": "sha256:" + hex.EncodeToString(sum[:]), "isBuildArtifact": "true"}
	if got := res[publish.ResultArtifactOutputs].ObjectVal; len(got) != len(want) || got["uri"] != want["uri"] || got["digest"] != want["digest"] || got["isBuildArtifact"] != "true" {
		t.Errorf("ARTIFACT_OUTPUTS %v, want %v", got, want)
	}

	// The pushed image verifies: stepseal's check, then cosign's.
	ck, err := publish.Check(ctx, c, tagged, publish.CheckOptions{Key: fx.Publisher.Public(), Policy: fx.Policy})
	if err != nil {
		t.Fatalf("publish.Check %s: %v", tagged, err)
	}
	if !ck.Encrypted {
		t.Error("published in the clear; the policy says encrypt to eu")
	}
	if cosign, err := exec.LookPath("cosign"); err == nil {
		home := t.TempDir()
		cmd := exec.CommandContext(ctx, cosign, "verify", "--key", fx.Path(publishtest.PublicFile), "--insecure-ignore-tlog", "--allow-http-registry", tagged.String())
		cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, ".sigstore"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cosign verify %s: %v\n%s", tagged, err, out)
		}
	} else {
		t.Log("cosign not installed (hack/install-test-deps.sh): verified with stepseal only")
	}

	// Chains' own formatter names the published image and file.
	if os.Getenv("STEPSEAL_RECORD_TASKRUN") != "" {
		rec := done.DeepCopy()
		rec.ManagedFields = nil
		b, _ := json.MarshalIndent(rec, "", "  ")
		if err := os.WriteFile(filepath.Join("testdata", "publish-taskrun.json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkChainsSubjects(t, done)

	// The key reaches the stepseal step only, read-only.
	pod, err := kube.Pods(ns).Get(ctx, done.Status.PodName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyVolume := ""
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "stepseal-publisher" {
			keyVolume = v.Name
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
				t.Errorf("key Secret volume mode %v, want 0400", v.Secret.DefaultMode)
			}
		}
	}
	for _, ct := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, m := range ct.VolumeMounts {
			if m.Name != keyVolume {
				continue
			}
			if ct.Name != "step-publish" || !m.ReadOnly {
				t.Errorf("container %s mounts the key (readOnly %v); only step-publish may, read-only", ct.Name, m.ReadOnly)
			}
		}
	}

	// A target no rule covers: refused by stepseal before any request.
	catalog := registryCatalog(ctx, t, up.Host)
	proxy.Reset()
	bad := runPublish(ctx, t, n, ns, "publish-no-rule", proxy.Host+"/elsewhere/app:v1")
	badLog := stepLog(ctx, t, n, bad)
	if bad.IsSuccessful() {
		t.Fatalf("published to a repository no rule covers:\n%s", badLog)
	}
	if !bytes.Contains(badLog, []byte("no platform policy rule for artifact")) || !bytes.Contains(badLog, []byte(proxy.Host+"/elsewhere/app")) {
		t.Errorf("the step's log does not give stepseal's refusal naming the repository:\n%s", badLog)
	}
	if rq := proxy.Requests(); len(rq) != 0 {
		t.Errorf("the registry was contacted: %v", rq)
	}
	if after := registryCatalog(ctx, t, up.Host); after != catalog {
		t.Errorf("registry catalog changed: %s → %s", catalog, after)
	}
	if len(bad.Status.Results) != 0 {
		t.Errorf("results of a refused publish: %v", bad.Status.Results)
	}
	t.Logf("refused: %s", lastLine(badLog))
}

// runPublish creates the catalog's tests/run.yaml TaskRun as name, IMAGE
// set to ref and the proxy's CA bound as ssl-ca-directory, and waits.
func runPublish(ctx context.Context, t *testing.T, n *realnode.Node, ns, name, ref string) *v1.TaskRun {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(publishTaskDir, "tests", "run.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tr v1.TaskRun
	if err := yaml.UnmarshalStrict(b, &tr); err != nil {
		t.Fatal(err)
	}
	tr.GenerateName, tr.Name, tr.Namespace = "", name, ns
	for i, p := range tr.Spec.Params {
		if p.Name == "IMAGE" {
			tr.Spec.Params[i].Value = *v1.NewStructuredValues(ref)
		}
	}
	tr.Spec.Workspaces = append(tr.Spec.Workspaces, v1.WorkspaceBinding{Name: "ssl-ca-directory", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "registry-ca"}}})
	if _, err := n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, &tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return realnode.WaitTaskRun(ctx, t, n.Tekton, ns, name)
}

// stepLog is the stepseal step's log (empty when the Pod never ran it).
func stepLog(ctx context.Context, t *testing.T, n *realnode.Node, tr *v1.TaskRun) []byte {
	t.Helper()
	if tr.Status.PodName == "" {
		return nil
	}
	b, err := n.Logs(ctx, tr.Namespace, tr.Status.PodName, "step-publish")
	if err != nil {
		t.Logf("log of %s: %v", tr.Name, err)
	}
	return b
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// registryCatalog is the registry's repository list, read directly.
func registryCatalog(ctx context.Context, t *testing.T, host string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/_catalog", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// podGateway is the host's address on the Pod network (the CNI bridge's
// gateway, what a Pod reaches the host at). The bridge gets it with the
// first Pod, so a TaskRun runs first when it has none yet.
func podGateway(ctx context.Context, t *testing.T, n *realnode.Node, ns, busybox string) string {
	t.Helper()
	find := func() string {
		ifc, err := net.InterfaceByName("stepseal0")
		if err != nil {
			return ""
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
		return ""
	}
	if gw := find(); gw != "" {
		return gw
	}
	tr := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: "warm-up", Namespace: ns}, Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Name: "true", Image: busybox, Command: []string{"true"}}}}}}
	if _, err := n.Tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	realnode.WaitTaskRun(ctx, t, n.Tekton, ns, tr.Name)
	gw := find()
	if gw == "" {
		t.Fatal("the stepseal0 bridge has no IPv4 address after a Pod ran")
	}
	return gw
}

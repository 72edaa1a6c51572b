package admissionconfig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/apis"
	certresources "knative.dev/pkg/webhook/certificates/resources"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Tekton's infrastructure images, as the controller is told them, pinned
// by the policy's "tekton" rule.
var tektonImages = map[string]string{
	"entrypoint":        "registry.example/tekton/entrypoint@sha256:" + strings.Repeat("1", 64),
	"nop":               "registry.example/tekton/nop@sha256:" + strings.Repeat("2", 64),
	"workingdirinit":    "registry.example/tekton/workingdirinit@sha256:" + strings.Repeat("3", 64),
	"sidecarlogresults": "registry.example/tekton/sidecarlogresults@sha256:" + strings.Repeat("4", 64),
	"shell":             "registry.example/tekton/busybox@sha256:" + strings.Repeat("5", 64),
}

// TestTektonPodCreationFailed is W33: Tekton's own controller (the module's
// version, out of cluster in a network namespace of its own, as hack/kube/node-up.sh
// runs it) creates a TaskRun's Pod in an opted-in namespace. Its
// infrastructure images pass by the pinned "tekton" rule, the step's
// unsigned image is refused, the TaskRun fails PodCreationFailed with
// stepseal's message naming the step's container and image, and the
// AdmissionDenied Event is on the TaskRun (the Pod's controller).
func TestTektonPodCreationFailed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Tekton's controller")
	}
	gobin := filepath.Join(goEnv(t, "GOPATH"), "bin")
	// hack/kube/build-node.sh tekton builds the module's version.
	tektonVersion := strings.TrimSpace(string(must(exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/tektoncd/pipeline").Output())))
	tektonBin := filepath.Join(gobin, "tekton-controller-"+tektonVersion)
	if _, err := os.Stat(tektonBin); err != nil {
		t.Skipf("%s not built (make deps: hack/kube/build-node.sh tekton)", tektonBin)
	}
	for _, tool := range []string{"unshare", "socat", "ip", testregistry.Binary} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("unshare --net needs root")
	}
	t.Setenv("SYSTEM_NAMESPACE", systemNS)
	c := kubetest.Start(t)
	kube, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	tekton, err := versioned.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ensureNamespace(ctx, t, kube, systemNS, nil)
	t.Cleanup(func() { uninstall(t, kube) })

	// The step's image: in a registry, unsigned.
	host := testregistry.Start(t)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ggcrname.NewTag(host+"/apps/unsigned:v1", ggcrname.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	unsigned := tag.Context().Digest(h.String()).String()
	key, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for _, ref := range tektonImages {
		digests = append(digests, fmt.Sprintf("%q", ref[strings.IndexByte(ref, '@')+1:]))
	}
	pol := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- name: tekton
  images: ["registry.example/tekton/**"]
  require: digest
  digests: [%s]
- name: apps
  images: [%q]
  require: signed
  keys: [%q]
`, strings.Join(digests, ", "), host+"/apps/**", string(pub))

	bin := buildStepseal(t)
	addr := freeAddr(t)
	port := 0
	fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &port)
	objs := forTest(t, kubetest.Objects(t, "*.yaml"), port)
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == policyCM {
			if err := unstructured.SetNestedField(o.Object, pol, "data", "policy.yaml"); err != nil {
				t.Fatal(err)
			}
		}
	}
	kubetest.Apply(ctx, t, c.Config(), "stepseal-admission-test", objs)
	r := startBinary(t, bin, saKubeconfig(t, saConfig(t, c, kube)), addr, freeAddr(t), "--insecure")

	waitFor(t, 60*time.Second, "the certificate Secret filled and its CA in both webhook configurations", func() bool {
		sec, err := kube.CoreV1().Secrets(systemNS).Get(ctx, certSecret, metav1.GetOptions{})
		return err == nil && len(sec.Data[certresources.CACert]) > 0 && bundlesHave(ctx, t, kube, sec.Data[certresources.CACert])
	})
	ns := c.Namespace(t)
	// Labelling goes through the label guard: retried until the apiserver
	// trusts the new CA.
	waitFor(t, 30*time.Second, "the namespace opted in", func() bool {
		n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return false
		}
		n.Labels[optIn] = "enforce"
		_, err = kube.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
		return err == nil
	})
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The webhook is up once an unsigned Pod is refused.
	waitFor(t, 60*time.Second, "the webhook refusing the unsigned image", func() bool {
		_, err := kube.CoreV1().Pods(ns).Create(ctx, pod(ns, "probe", unsigned), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "stepseal: ")
	})

	startTektonController(ctx, t, c, tektonBin)

	tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "unsigned-step", Namespace: ns},
		Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{
			Name: "build", Image: unsigned, Command: []string{"/bin/build"},
		}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cond *apis.Condition
	waitFor(t, 90*time.Second, "the TaskRun to fail", func() bool {
		tr, err = tekton.TektonV1().TaskRuns(ns).Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cond = tr.Status.GetCondition(apis.ConditionSucceeded)
		return cond != nil && cond.IsFalse()
	})
	want := "container step-build: image " + unsigned + ` (rule "apps"): no signature found`
	if cond.Reason != "PodCreationFailed" || !strings.Contains(cond.Message, "stepseal: ") || !strings.Contains(cond.Message, want) {
		t.Fatalf("TaskRun condition %s: %s, want PodCreationFailed naming %q", cond.Reason, cond.Message, want)
	}
	// Tekton's init container (the pinned entrypoint image) was not what
	// was refused.
	if strings.Contains(cond.Message, tektonImages["entrypoint"]) {
		t.Errorf("Tekton's pinned entrypoint image was refused: %s", cond.Message)
	}
	t.Logf("TaskRun %s: %s", cond.Reason, cond.Message)
	// The refused Pod never existed: the Event is on its owner, the TaskRun.
	waitFor(t, 20*time.Second, "an AdmissionDenied Event on the TaskRun", func() bool {
		evs, err := kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "AdmissionDenied" && e.Regarding.Kind == "TaskRun" && e.Regarding.Name == tr.Name && e.Regarding.UID == tr.UID &&
				strings.Contains(e.Note, "container step-build: image "+unsigned) {
				return true
			}
		}
		return false
	})
	if f := r.forbiddenLogged(); len(f) > 0 {
		t.Errorf("the webhook was refused something: %v", f)
	}
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
}

// startTektonController applies Tekton's namespace and config ConfigMaps
// and runs its controller as hack/kube/node-up.sh does: in a network (and
// PID) namespace of its own with only loopback, since it binds its probe
// and profiling ports on every interface, and socat carrying the
// apiserver's loopback port in over a Unix socket.
func startTektonController(ctx context.Context, t *testing.T, c *kubetest.Cluster, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "w33-tekton-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	tektonDir := strings.TrimSpace(string(must(exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tektoncd/pipeline").Output())))
	files, _ := filepath.Glob(filepath.Join(tektonDir, "config", "config-*.yaml"))
	files = append([]string{filepath.Join(tektonDir, "config", "100-namespace", "100-namespace.yaml")}, files...)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, kubetest.DecodeObjects(t, f, b)...)
	}
	kubetest.Apply(ctx, t, c.Config(), "stepseal-admission-test", objs)

	host := c.Config().Host
	apiPort := host[strings.LastIndexByte(host, ':')+1:]
	sock := filepath.Join(dir, "apiserver.sock")
	socat := exec.Command("socat", "UNIX-LISTEN:"+sock+",fork,mode=600", "TCP:127.0.0.1:"+apiPort)
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = socat.Process.Kill(); _ = socat.Wait() })
	waitFor(t, 10*time.Second, "the apiserver socket", func() bool { _, err := os.Stat(sock); return err == nil })

	script := filepath.Join(dir, "tekton-controller.sh")
	flags := fmt.Sprintf("-entrypoint-image %s -nop-image %s -workingdirinit-image %s -sidecarlogresults-image %s -shell-image %s -shell-image-win mcr.microsoft.com/powershell:nanoserver-unused-on-linux",
		tektonImages["entrypoint"], tektonImages["nop"], tektonImages["workingdirinit"], tektonImages["sidecarlogresults"], tektonImages["shell"])
	body := fmt.Sprintf(`#!/bin/sh
set -e
ip link set lo up
socat TCP-LISTEN:%s,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:%s &
export SYSTEM_NAMESPACE=tekton-pipelines KUBERNETES_MIN_VERSION=v1.28.0 METRICS_DOMAIN=tekton.dev/pipeline
export CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging
export CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags
export CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire
exec %s -kubeconfig %s -disable-ha %s
`, apiPort, sock, bin, c.Kubeconfig(), flags)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "tekton-controller.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command("unshare", "--net", "--pid", "--fork", "--kill-child", script)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("Tekton controller log (tail):\n%s", b)
		}
	})
	waitFor(t, 60*time.Second, "Tekton's controller starting", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "Starting controllers")
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

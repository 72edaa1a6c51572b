package realnode

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/pkg/apis"
)

// EnvDir names the environment variable holding the directory of a running
// node (hack/kube/node-up.sh DIR).
const EnvDir = "STEPSEAL_REALNODE"

// Node is a running real node.
type Node struct {
	// Dir is the node's directory: kubeconfig, images.env, logs.
	Dir string
	// Kubeconfig is the path of its admin kubeconfig.
	Kubeconfig string
	Kube       kubernetes.Interface
	Tekton     versioned.Interface
	images     map[string]string
}

// Get returns the node named by $STEPSEAL_REALNODE, or skips the test when
// that variable is unset. It fails the test when the node is named but
// unusable (no kubeconfig, no API).
func Get(t testing.TB) *Node {
	t.Helper()
	dir := os.Getenv(EnvDir)
	if dir == "" {
		t.Skip(EnvDir + " is unset: needs a real node (make realnode)")
	}
	n, err := Open(dir)
	if err != nil {
		t.Fatalf("realnode: %v", err)
	}
	return n
}

// Open returns the node whose directory is dir.
func Open(dir string) (*Node, error) {
	n := &Node{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), images: map[string]string{}}
	if _, err := os.Stat(n.Kubeconfig); err != nil {
		return nil, fmt.Errorf("%s: no kubeconfig (is hack/kube/node-up.sh %s running?): %w", dir, dir, err)
	}
	f, err := os.Open(filepath.Join(dir, "images.env"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			n.images[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	cfg, err := n.Config()
	if err != nil {
		return nil, err
	}
	if n.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if n.Tekton, err = versioned.NewForConfig(cfg); err != nil {
		return nil, err
	}
	return n, nil
}

// Config returns a new admin client config for the node's API server.
func (n *Node) Config() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", n.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", n.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// Image returns the reference by digest of one of the node's images, by its
// images.env name (BUSYBOX, PAUSE, ENTRYPOINT, NOP, WORKINGDIRINIT,
// SIDECARLOGRESULTS), and fails the test if there is none.
func (n *Node) Image(t testing.TB, name string) string {
	t.Helper()
	ref, ok := n.images[name]
	if !ok {
		t.Fatalf("realnode: no image %s in %s/images.env", name, n.Dir)
	}
	return ref
}

var notDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a fresh namespace for the test, named after it, waits for
// its default ServiceAccount (Tekton's Pods run as it), and deletes it when the
// test ends (without waiting).
func (n *Node) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 50 {
		name = strings.TrimRight(name[:50], "-")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := n.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: name + "-", Labels: map[string]string{"stepseal.dev/realnode": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("realnode: creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Kube.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	})
	for {
		if _, err := n.Kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return ns.Name
		}
		select {
		case <-ctx.Done():
			t.Fatalf("realnode: namespace %s has no default ServiceAccount after 30 s (is kube-controller-manager running?)", ns.Name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitTaskRun waits until the TaskRun is done (succeeded or failed) and returns
// it. It fails the test when ctx ends first, with the TaskRun's last condition.
func WaitTaskRun(ctx context.Context, t testing.TB, tekton versioned.Interface, ns, name string) *v1.TaskRun {
	t.Helper()
	var last *v1.TaskRun
	for {
		tr, err := tekton.TektonV1().TaskRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = tr
			if tr.IsDone() {
				return tr
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("realnode: TaskRun %s/%s not done: %v", ns, name, condition(last))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitPipelineRun waits until the PipelineRun is done and returns it.
func WaitPipelineRun(ctx context.Context, t testing.TB, tekton versioned.Interface, ns, name string) *v1.PipelineRun {
	t.Helper()
	var last *v1.PipelineRun
	for {
		pr, err := tekton.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = pr
			if pr.IsDone() {
				return pr
			}
		}
		select {
		case <-ctx.Done():
			var c *apis.Condition
			if last != nil {
				c = last.Status.GetCondition(apis.ConditionSucceeded)
			}
			t.Fatalf("realnode: PipelineRun %s/%s not done: %+v", ns, name, c)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func condition(tr *v1.TaskRun) any {
	if tr == nil {
		return "not found"
	}
	if c := tr.Status.GetCondition(apis.ConditionSucceeded); c != nil {
		return *c
	}
	return "no condition yet"
}

// Logs reads a container's log from the kubelet's log directory (DIR/pod-logs,
// CRI format: partial lines joined), the way `kubectl logs` would return it.
// The API server cannot reach this node's kubelet (it listens on loopback
// only), so pods/log does not work here; tests read the same bytes this way.
func (n *Node) Logs(_ context.Context, namespace, pod, container string) ([]byte, error) {
	dirs, err := filepath.Glob(filepath.Join(n.Dir, "pod-logs", namespace+"_"+pod+"_*", container))
	if err != nil || len(dirs) != 1 {
		return nil, fmt.Errorf("realnode: log of %s/%s container %s: %d directories (%v)", namespace, pod, container, len(dirs), err)
	}
	files, _ := filepath.Glob(filepath.Join(dirs[0], "*.log"))
	if len(files) == 0 {
		return nil, fmt.Errorf("realnode: no log file in %s", dirs[0])
	}
	sort.Strings(files)
	b, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		// "<time> <stream> <P|F> <content>"
		parts := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 4)
		if len(parts) < 3 {
			continue
		}
		content := ""
		if len(parts) == 4 {
			content = parts[3]
		}
		out.WriteString(content)
		if parts[2] != "P" {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), nil
}

// ScratchRegistry returns the HOST:PORT of the node's scratch registry
// (node-up.sh starts it with its storage under the node's directory, and
// containerd pulls from it over plain HTTP): where tests push their own
// images. It fails the test when the node has none.
func (n *Node) ScratchRegistry(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "scratch-registry"))
	if err != nil {
		t.Fatalf("realnode: no scratch registry (a node-up.sh from this checkout writes %s/scratch-registry): %v", n.Dir, err)
	}
	return strings.TrimSpace(string(b))
}

// InstallKey puts a private key (PEM) into the node's decryption key
// directory (DIR/keys, read by ctd-decoder on every encrypted layer
// containerd unpacks) as file name, mode 0600, and removes it when the test
// ends. It returns the function that removes it earlier.
func (n *Node) InstallKey(t testing.TB, name string, pemKey []byte) (remove func()) {
	t.Helper()
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		t.Fatalf("realnode: bad key file name %q", name)
	}
	p := filepath.Join(n.Dir, "keys", name)
	if err := os.WriteFile(p, pemKey, 0o600); err != nil {
		t.Fatalf("realnode: installing key: %v", err)
	}
	remove = func() {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			t.Errorf("realnode: removing key %s: %v", p, err)
		}
	}
	t.Cleanup(remove)
	return remove
}

// ctr runs containerd's ctr against the node's containerd, in the CRI's
// namespace (k8s.io).
func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	args = append([]string{"-a", filepath.Join(n.Dir, "containerd", "containerd.sock"), "-n", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, "ctr", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args[4:], " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (n *Node) imageRefs(ctx context.Context, digest string) ([]string, error) {
	out, err := n.ctr(ctx, "images", "ls")
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, line := range strings.Split(string(out), "\n")[1:] {
		// REF TYPE DIGEST SIZE PLATFORMS LABELS
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == digest {
			refs = append(refs, f[0])
		}
	}
	return refs, nil
}

// RemoveImage removes every name of the image whose manifest digest is
// digest from the node's containerd and waits for its garbage collection,
// so that its unpacked (decrypted) layers go too — unless a container
// still uses them: delete the Pods that ran it first (see
// WaitNoContainers).
func (n *Node) RemoveImage(ctx context.Context, digest string) error {
	refs, err := n.imageRefs(ctx, digest)
	if err != nil || len(refs) == 0 {
		return err
	}
	_, err = n.ctr(ctx, append([]string{"images", "rm", "--sync"}, refs...)...)
	return err
}

// WaitNoContainers waits until containerd holds no container of the image
// whose manifest digest is digest (the kubelet removes a deleted Pod's
// containers in its garbage collection, about once a minute).
func (n *Node) WaitNoContainers(ctx context.Context, image string) error {
	for {
		out, err := n.ctr(ctx, "containers", "ls")
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), image) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("realnode: containers of %s still exist: %w\n%s", image, ctx.Err(), out)
		case <-time.After(time.Second):
		}
	}
}

// WaitPod polls the Pod until done returns true for it, and returns it. It
// fails the test when ctx ends first, with the Pod's last status.
func (n *Node) WaitPod(ctx context.Context, t testing.TB, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	for {
		p, err := n.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if done(p) {
				return p
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				t.Fatalf("realnode: Pod %s/%s: %v", ns, name, err)
			}
			t.Fatalf("realnode: Pod %s/%s not as awaited: phase %s, %+v", ns, name, last.Status.Phase, last.Status.ContainerStatuses)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

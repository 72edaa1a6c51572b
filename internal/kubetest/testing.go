package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// shared is the one cluster of a test binary, started by the first Start and
// stopped by Main.
var shared struct {
	once    sync.Once
	main    bool
	cluster *Cluster
	err     error
	dir     string
	opts    Options
}

// Main runs the tests of a package that uses Start and then stops the shared
// cluster. Call it from TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
// When a test failed, the cluster's logs are kept and their directory printed.
func Main(m *testing.M) { MainWith(m, Options{}) }

// MainWith is Main with options for the shared cluster (Dir is set by
// Start), e.g. an audit policy for the tests of one package only.
func MainWith(m *testing.M, o Options) {
	shared.main, shared.opts = true, o
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Stop()
	}
	if shared.dir != "" {
		// Nothing worth keeping when etcd never started (say, no binaries).
		if _, err := os.Stat(filepath.Join(shared.dir, "etcd.log")); err == nil && (code != 0 || shared.err != nil) {
			fmt.Fprintf(os.Stderr, "kubetest: cluster logs kept in %s\n", shared.dir)
		} else {
			_ = os.RemoveAll(shared.dir)
		}
	}
	os.Exit(code)
}

// Start returns the test binary's cluster, starting it on first use (about
// 8 s). It fails the test when etcd or kube-apiserver is not installed, or when
// the package's TestMain does not call Main (which stops the cluster).
func Start(t testing.TB) *Cluster {
	t.Helper()
	if !shared.main {
		t.Fatal("kubetest: call kubetest.Main(m) from TestMain, it stops the shared cluster")
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "kubetest-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		o := shared.opts
		o.Dir = dir
		shared.cluster, shared.err = Launch(ctx, o)
		if shared.err == nil {
			t.Logf("kubetest: cluster ready in %v (%s)", time.Since(start).Round(time.Millisecond), dir)
		}
	})
	if shared.err != nil {
		if errors.Is(shared.err, ErrMissingBinary) {
			t.Fatalf("kubetest: %v", shared.err)
		}
		t.Fatalf("kubetest: starting the cluster: %v", shared.err)
	}
	return shared.cluster
}

// Restart stops kube-apiserver and starts it again on the same port and etcd,
// for tests of recovery from an API server restart. Other tests sharing the
// cluster see the outage too: do not run such a test with t.Parallel.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatalf("kubetest: restarting kube-apiserver: %v", err)
	}
	t.Logf("kubetest: kube-apiserver restarted in %v", time.Since(start).Round(time.Millisecond))
}

// Namespace creates a fresh namespace for the test, named after it. It is not
// deleted: without kube-controller-manager namespaces never finish deleting,
// and the cluster is thrown away with the test binary.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	client, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   namespaceName(t.Name()),
		Labels: map[string]string{"stepseal.dev/kubetest": "true"},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: creating namespace %s: %v", ns.Name, err)
	}
	return ns.Name
}

var notDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// namespaceName turns a test name into a unique DNS label.
func namespaceName(test string) string {
	name := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(test), "-"), "-")
	if len(name) > 48 {
		name = strings.TrimRight(name[:48], "-")
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	if name == "" {
		name = "test"
	}
	return name + "-" + hex.EncodeToString(suffix)
}

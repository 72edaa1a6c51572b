package incluster

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/stepseal/stepseal/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// TestNodePlatforms: what `serve --policy-configmap --platform-label`
// gives the Decider, against a real kube-apiserver: a node's label from
// the informer (which keeps no status), a node created after the informer
// synced from the API, a node that does not exist as NotFound.
func TestNodePlatforms(t *testing.T) {
	c := kubetest.Start(t)
	client, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const label = "node-restriction.kubernetes.io/stepseal-platform"
	suffix := c.Namespace(t)
	mkNode := func(nm, platform string) string {
		t.Helper()
		nm += "-" + suffix[len(suffix)-8:]
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nm, Labels: map[string]string{label: platform}},
			Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"x"}}}}}
		if _, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.CoreV1().Nodes().Delete(context.Background(), nm, metav1.DeleteOptions{}) })
		return nm
	}
	eu := mkNode("eu", "eu")
	// The API keeps a status (what the informer must drop).
	got, err := client.CoreV1().Nodes().Get(ctx, eu, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Images) == 0 {
		got.Status.Images = []corev1.ContainerImage{{Names: []string{"x"}}}
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	np, factory, inf, err := NodePlatforms(client, label)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("node informer did not sync")
	}
	if np.Label != label {
		t.Errorf("label %q", np.Label)
	}
	n, err := np.Node(ctx, eu)
	if err != nil || n.Labels[label] != "eu" {
		t.Fatalf("node %s: %v %v", eu, n, err)
	}
	if cached, ok, _ := inf.GetStore().GetByKey(eu); !ok || len(cached.(*corev1.Node).Status.Images) != 0 {
		t.Errorf("the informer keeps more than the labels: %v %v", ok, cached)
	}
	// A node created now: from the informer's watch or, before that
	// arrives, by asking the API.
	us := mkNode("us", "us")
	if n, err := np.Node(ctx, us); err != nil || n.Labels[label] != "us" {
		t.Errorf("node created after the sync %s: %v %v", us, n, err)
	}
	if _, err := np.Node(ctx, "ghost-"+suffix); !apierrors.IsNotFound(err) {
		t.Errorf("a node that does not exist: %v", err)
	}
}

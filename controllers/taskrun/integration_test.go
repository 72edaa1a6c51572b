package taskrun

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	cminformer "knative.dev/pkg/configmap/informer"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// TestIntegrationSignsEveryStep runs the controller in-process against a real
// kube-apiserver with Tekton's CRDs: TaskRuns are created, finished the way
// Tekton's controller writes their status, and must end up annotated
// signed=true, without the finalizer, with exactly one verified link per step
// and one verified provenance in the store.
func TestIntegrationSignsEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	c := kubetest.Start(t)
	ns, sysNS := c.Namespace(t), c.Namespace(t)
	t.Setenv("SYSTEM_NAMESPACE", sysNS)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	kube, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	tekton, err := versioned.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	sec, pub := signingSecret(t, "signing-secrets", "pw")
	sec.Namespace, sec.ResourceVersion = sysNS, ""
	if _, err := kube.CoreV1().Secrets(sysNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: sysNS},
		Data:       map[string]string{settings.KeyStoreDir: dir, settings.KeyRetryBaseDelay: "100ms", settings.KeyRetryMaxDelay: "1s"},
	}
	if _, err := kube.CoreV1().ConfigMaps(sysNS).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The controller, wired as sharedmain wires it.
	runCtx, stop := context.WithCancel(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()))
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	runCtx, informers := injection.Default.SetupInformers(runCtx, c.Config())
	cmw := cminformer.NewInformedWatcher(kubeclient.Get(runCtx), sysNS)
	impl := NewController(NewShared())(runCtx, cmw)
	if err := cmw.Start(runCtx.Done()); err != nil {
		t.Fatal(err)
	}
	if err := controller.StartInformers(runCtx.Done(), informers...); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = impl.RunContext(runCtx, 2) }()

	const n = 20
	steps := []v1.Step{{Name: "fetch", Image: "alpine:3"}, {Name: "build", Image: "golang:1.26"}, {Name: "push", Image: "crane:latest"}}
	start := time.Now()
	var trs []*v1.TaskRun
	for i := range n {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("build-%02d", i), Namespace: ns},
			Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: steps}},
		}
		tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		opts := kubetest.FinishOptions{Results: []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("registry.example.com/app")},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(fmt.Sprintf("sha256:%064x", i))},
		}}
		if tr, err = kubetest.FinishTaskRun(ctx, tekton, tr, opts); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}

	// Wait for every TaskRun to be signed.
	for _, tr := range trs {
		for {
			got, err := tekton.TektonV1().TaskRuns(ns).Get(ctx, tr.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Annotations[AnnotationSigned]; s == "true" && !hasFinalizer(got) {
				break
			} else if s == "failed" {
				t.Fatalf("%s: signed=failed: %s", tr.Name, got.Annotations[AnnotationError])
			}
			if ctx.Err() != nil {
				t.Fatalf("%s not signed in time: annotations %v finalizers %v", tr.Name, got.Annotations, got.Finalizers)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d TaskRuns of %d steps signed %.1fs after the first was created", n, len(steps), time.Since(start).Seconds())

	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		var want []string
		for _, s := range steps {
			want = append(want, tr.Name+"."+s.Name)
		}
		verifyStored(t, ds, pub, string(tr.UID), want, 1)
	}
	all, err := ds.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n*(len(steps)+1) {
		t.Errorf("%d entries stored, want %d (a link per step and a provenance per TaskRun)", len(all), n*(len(steps)+1))
	}
}

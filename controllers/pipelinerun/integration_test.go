package pipelinerun

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
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// TestIntegrationSignsBothLevels runs the TaskRun and PipelineRun
// controllers in-process, wired as images/controller wires them, against a
// real kube-apiserver: a PipelineRun's three child TaskRuns and then the
// PipelineRun finish the way Tekton writes them; every TaskRun and the
// PipelineRun must end up signed=true, and the PipelineRun's provenance must
// name every child's links and provenance by the digest of the stored bytes.
func TestIntegrationSignsBothLevels(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	c := kubetest.Start(t)
	ns, sysNS := c.Namespace(t), c.Namespace(t)
	t.Setenv("SYSTEM_NAMESPACE", sysNS)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := kubernetes.NewForConfigOrDie(c.Config())
	tekton := versioned.NewForConfigOrDie(c.Config())

	sec, pub := signingSecret(t, sysNS)
	sec.ResourceVersion = ""
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

	runCtx, stop := context.WithCancel(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()))
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	runCtx, informers := injection.Default.SetupInformers(runCtx, c.Config())
	cmw := cminformer.NewInformedWatcher(kubeclient.Get(runCtx), sysNS)
	shared := taskrun.NewShared()
	impls := []*controller.Impl{taskrun.NewController(shared)(runCtx, cmw), NewController(shared)(runCtx, cmw)}
	if err := cmw.Start(runCtx.Done()); err != nil {
		t.Fatal(err)
	}
	if err := controller.StartInformers(runCtx.Done(), informers...); err != nil {
		t.Fatal(err)
	}
	for _, impl := range impls {
		wg.Add(1)
		go func() { defer wg.Done(); _ = impl.RunContext(runCtx, 2) }()
	}

	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: ns},
		Spec: v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{Tasks: []v1.PipelineTask{
			{Name: "fetch", TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "clone", Image: "alpine:3"}}}}},
		}}},
	}
	pr, err := tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var trs []*v1.TaskRun
	for i, task := range []string{"fetch", "build", "push"} {
		spec := &v1.TaskSpec{Steps: []v1.Step{{Name: "prepare", Image: "alpine:3"}, {Name: task, Image: "golang:1.26"}}}
		tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, kubetest.ChildTaskRun(pr, task, spec), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr, err = kubetest.FinishTaskRun(ctx, tekton, tr, kubetest.FinishOptions{Results: []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("registry.example.com/" + task)},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(fmt.Sprintf("sha256:%064x", i+1))},
		}}); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	if pr, err = kubetest.FinishPipelineRun(ctx, tekton, pr, kubetest.PipelineFinishOptions{TaskRuns: trs}); err != nil {
		t.Fatal(err)
	}

	for {
		got, err := tekton.TektonV1().PipelineRuns(ns).Get(ctx, pr.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Annotations[taskrun.AnnotationSigned]; s == "true" {
			break
		} else if s == "failed" {
			t.Fatalf("PipelineRun signed=failed: %s", got.Annotations[taskrun.AnnotationError])
		}
		if ctx.Err() != nil {
			t.Fatalf("PipelineRun not signed in time: %v", got.Annotations)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("PipelineRun with %d TaskRuns signed at both levels %.1fs after the first TaskRun was created", len(trs), time.Since(start).Seconds())
	for _, tr := range trs {
		got, err := tekton.TektonV1().TaskRuns(ns).Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations[taskrun.AnnotationSigned] != "true" {
			t.Errorf("%s: annotations %v", tr.Name, got.Annotations)
		}
	}
	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := runProvenance(t, ds, pub, pr)
	checkNamesEveryChild(t, ds, p, pr, trs)
}

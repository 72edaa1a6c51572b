package controllertest

import (
	"context"
	"crypto"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	cminformer "knative.dev/pkg/configmap/informer"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/signing"
)

// API is a real Kubernetes API (internal/kubetest) set up for the
// controllers: a fresh test namespace NS, a system namespace SystemNS
// (SYSTEM_NAMESPACE for the test) holding the signing Secret and a
// stepseal-config whose directory store is StoreDir, clients, and a context
// that ends with the test's time budget.
type API struct {
	*kubetest.Cluster
	Ctx          context.Context
	NS, SystemNS string
	Kube         kubernetes.Interface
	Tekton       versioned.Interface
	StoreDir     string
	// Pub is the signing Secret's public key.
	Pub crypto.PublicKey
}

// StartAPI skips the test in -short mode, else starts (or reuses) the test
// binary's cluster (kubetest.Start: TestMain must call kubetest.Main) and
// sets it up for the controllers with a stepseal-config of the directory
// store, retries after 100 ms up to 1 s, and config on top. Ctx ends after
// timeout or with the test.
func StartAPI(t *testing.T, timeout time.Duration, config map[string]string) *API {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	c := kubetest.Start(t)
	a := &API{Cluster: c, NS: c.Namespace(t), SystemNS: c.Namespace(t), StoreDir: t.TempDir()}
	t.Setenv("SYSTEM_NAMESPACE", a.SystemNS)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	a.Ctx = ctx
	a.Kube = kubernetes.NewForConfigOrDie(c.Config())
	a.Tekton = versioned.NewForConfigOrDie(c.Config())
	data := map[string]string{settings.KeyStoreDir: a.StoreDir, settings.KeyRetryBaseDelay: "100ms", settings.KeyRetryMaxDelay: "1s"}
	maps.Copy(data, config)
	a.Pub = Install(ctx, t, a.Kube, a.SystemNS, data)
	return a
}

// Install puts what the controllers read into the system namespace sysNS of
// a real API: a signing Secret "signing-secrets" (password "pw") and the
// stepseal-config ConfigMap with data. It returns the signing key's public
// key.
func Install(ctx context.Context, t testing.TB, kube kubernetes.Interface, sysNS string, data map[string]string) crypto.PublicKey {
	t.Helper()
	sec, pub := SigningSecret(t, "signing-secrets", "pw")
	sec.Namespace, sec.ResourceVersion = sysNS, ""
	if _, err := kube.CoreV1().Secrets(sysNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: sysNS},
		Data:       data,
	}
	if _, err := kube.CoreV1().ConfigMaps(sysNS).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return pub
}

// RunControllers runs controllers in-process against the API of cfg, wired
// as sharedmain wires them: injected informers, an informed watcher of
// sysNS's ConfigMaps, every constructor of ctors called with them (ctx
// carries the logger and, for leader election, the elector builder), then
// prepare (nil: nothing) on the Impls before anything starts, two workers
// each. They stop when ctx ends or the test does, whichever is first; the
// test waits for them.
func RunControllers(ctx context.Context, t testing.TB, cfg *rest.Config, sysNS string, prepare func([]*controller.Impl), ctors ...injection.ControllerConstructor) []*controller.Impl {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	runCtx, informers := injection.Default.SetupInformers(runCtx, cfg)
	cmw := cminformer.NewInformedWatcher(kubeclient.Get(runCtx), sysNS)
	var impls []*controller.Impl
	for _, ctor := range ctors {
		impls = append(impls, ctor(runCtx, cmw))
	}
	if prepare != nil {
		prepare(impls)
	}
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
	return impls
}

// KeyID is s's in-toto key ID.
func KeyID(t testing.TB, s signing.Signer) string {
	t.Helper()
	id, err := s.KeyID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

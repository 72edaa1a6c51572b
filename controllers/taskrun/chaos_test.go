package taskrun

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// The chaos tests run the real controller binary (images/controller) as a
// separate process against the kubetest apiserver, so that it can be killed
// with SIGKILL at any point, and check the outcome through the API and the
// directory store.

var chaosSteps = []v1.Step{
	{Name: "fetch", Image: "alpine:3"},
	{Name: "deps", Image: "golang:1.26"},
	{Name: "build", Image: "golang:1.26"},
	{Name: "test", Image: "golang:1.26"},
	{Name: "push", Image: "crane:latest"},
}

type chaosEnv struct {
	t          *testing.T
	cluster    *kubetest.Cluster
	ns, sysNS  string
	kube       kubernetes.Interface
	tekton     versioned.Interface
	storeDir   string
	pub        crypto.PublicKey
	bin        string
	logDir     string
	starts     int
	controller *exec.Cmd
	exited     chan struct{}
}

func newChaosEnv(t *testing.T) *chaosEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and the controller binary")
	}
	c := kubetest.Start(t)
	e := &chaosEnv{t: t, cluster: c, ns: c.Namespace(t), sysNS: c.Namespace(t), logDir: t.TempDir()}
	var err error
	if e.kube, err = kubernetes.NewForConfig(c.Config()); err != nil {
		t.Fatal(err)
	}
	if e.tekton, err = versioned.NewForConfig(c.Config()); err != nil {
		t.Fatal(err)
	}
	e.storeDir = filepath.Join(t.TempDir(), "store")
	e.pub = controllertest.Install(context.Background(), t, e.kube, e.sysNS, map[string]string{
		settings.KeyStoreDir:       e.storeDir,
		settings.KeyRetryBaseDelay: "100ms",
		settings.KeyRetryMaxDelay:  "1s",
		settings.KeyMaxRetries:     "10000",
	})
	e.bin = buildController(t)
	t.Cleanup(func() {
		e.kill()
		if t.Failed() {
			t.Logf("controller logs kept in %s", e.logDir)
		}
	})
	return e
}

// buildController builds images/controller into a temporary directory.
func buildController(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stepseal-controller")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "github.com/stepseal/stepseal/images/controller")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the controller: %v\n%s", err, out)
	}
	t.Logf("controller built in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// start runs the controller process; it must not be running.
func (e *chaosEnv) start() {
	e.t.Helper()
	e.starts++
	log, err := os.Create(filepath.Join(e.logDir, fmt.Sprintf("controller-%02d.log", e.starts)))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "-kubeconfig", e.cluster.Kubeconfig(), "-disable-ha",
		"-kube-api-qps", "100", "-kube-api-burst", "200")
	cmd.Env = append(os.Environ(),
		"SYSTEM_NAMESPACE="+e.sysNS,
		"METRICS_DOMAIN=stepseal.dev/stepseal",
		"PROBES_PORT=0", "PROFILING_PORT=0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = log.Close(); close(exited) }()
	e.controller, e.exited = cmd, exited
}

// kill SIGKILLs the controller process, if running, and waits for it.
func (e *chaosEnv) kill() {
	if e.controller == nil {
		return
	}
	_ = e.controller.Process.Signal(syscall.SIGKILL)
	<-e.exited
	e.controller = nil
}

// create creates and finishes TaskRuns name-from..name-to-1 with workers
// in parallel, retrying transient API errors.
func (e *chaosEnv) create(ctx context.Context, prefix string, from, to, workers int) {
	e.t.Helper()
	idx := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := e.createOne(ctx, fmt.Sprintf("%s-%04d", prefix, i), i); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		idx <- i
	}
	close(idx)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		e.t.Fatal(err)
	}
}

func (e *chaosEnv) createOne(ctx context.Context, name string, i int) error {
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: chaosSteps}},
	}
	opts := kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", i)}
	var err error
	for attempt := 0; attempt < 60; attempt++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var created *v1.TaskRun
		created, err = e.tekton.TektonV1().TaskRuns(e.ns).Create(ctx, tr, metav1.CreateOptions{})
		if err != nil {
			// An earlier attempt may have succeeded before the connection broke.
			if created, err = e.tekton.TektonV1().TaskRuns(e.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				time.Sleep(time.Second)
				continue
			}
		}
		if _, err = kubetest.FinishTaskRun(ctx, e.tekton, created, opts); err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("creating %s: %w", name, err)
}

// watchSigned counts, per TaskRun of the namespace, how often
// stepseal.dev/signed turned to "true".
func (e *chaosEnv) watchSigned(ctx context.Context) *kubetest.SignedWatch {
	e.t.Helper()
	return kubetest.WatchSigned(ctx, e.t, e.tekton, e.ns)
}

// waitAllSigned waits until n TaskRuns of the namespace are signed=true
// without the finalizer (by listing, not through the watch).
func (e *chaosEnv) waitAllSigned(ctx context.Context, n int) {
	e.t.Helper()
	kubetest.WaitTaskRunsSigned(ctx, e.t, e.tekton, e.ns, n)
}

// verify checks the store: per TaskRun exactly one verified link per step
// and one verified provenance, and nothing else; and that the watch saw
// each TaskRun turn signed exactly once.
func (e *chaosEnv) verify(ctx context.Context, n int, tw *kubetest.SignedWatch) {
	e.t.Helper()
	list, err := e.tekton.TektonV1().TaskRuns(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	ds, err := dirstore.Open(e.storeDir)
	if err != nil {
		e.t.Fatal(err)
	}
	all, err := ds.List(ctx, store.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	if want := n * (len(chaosSteps) + 1); len(all) != want {
		e.t.Errorf("%d entries stored, want %d (a link per step and a provenance per TaskRun)", len(all), want)
	}
	// Count per run ID (the TaskRun UID) and entry; one List, not one per run.
	perRun := map[string]map[string]int{}
	for _, en := range all {
		if perRun[en.RunID] == nil {
			perRun[en.RunID] = map[string]int{}
		}
		perRun[en.RunID][en.Kind]++
		perRun[en.RunID][en.Kind+"/"+en.Name]++
	}
	for i := range list.Items {
		tr := &list.Items[i]
		c := perRun[string(tr.UID)]
		if c[store.KindLink] != len(chaosSteps) || c[store.KindProvenance] != 1 {
			e.t.Errorf("%s: %d links and %d provenances stored, want %d and 1", tr.Name, c[store.KindLink], c[store.KindProvenance], len(chaosSteps))
		}
		for k, v := range c {
			if v != 1 && k != store.KindLink && k != store.KindProvenance {
				e.t.Errorf("%s: %s stored %d times", tr.Name, k, v)
			}
		}
		// Full signature verification on a sample: it lists per run.
		if i%25 == 0 {
			var want []string
			for _, s := range chaosSteps {
				want = append(want, tr.Name+"."+s.Name)
			}
			verifyStored(e.t, ds, e.pub, string(tr.UID), want, 1)
		}
	}
	if tw == nil {
		return
	}
	tw.ExactlyOnce(ctx, e.t, e.tekton, e.ns, n)
}

// TestChaosControllerKilled SIGKILLs the controller process 20 times at
// random points while TaskRuns finish: every TaskRun must end up signed
// exactly once, with exactly one link per step and one provenance stored.
func TestChaosControllerKilled(t *testing.T) {
	e := newChaosEnv(t)
	n := 1000
	if os.Getenv("STEPSEAL_CHAOS_N") != "" {
		_, _ = fmt.Sscan(os.Getenv("STEPSEAL_CHAOS_N"), &n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tw := e.watchSigned(ctx)

	start := time.Now()
	created := make(chan struct{})
	go func() { defer close(created); e.create(ctx, "chaos", 0, n, 8) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const kills = 20
	for k := range kills {
		e.start()
		// Random points: from before the informers synced to well into signing.
		time.Sleep(time.Duration(200+rng.IntN(2300)) * time.Millisecond)
		e.kill()
		if k == kills/2 {
			t.Logf("after %d kills: %d of %d signed", k+1, tw.SignedCount(), n)
		}
	}
	t.Logf("%d kills in %v, %d of %d signed so far", kills, time.Since(start).Round(time.Millisecond), tw.SignedCount(), n)
	e.start()
	<-created
	e.waitAllSigned(ctx, n)
	t.Logf("%d TaskRuns of %d steps signed %v after the first was created", n, len(chaosSteps), time.Since(start).Round(time.Millisecond))
	e.verify(ctx, n, tw)
}

// TestChaosStoreUnavailable makes the store unusable for a while (its
// directory is replaced by a file, which fails writes even for root, where
// chmod 0500 would not): nothing may be marked signed meanwhile, and once it
// is back everything is signed and stored, nothing lost.
func TestChaosStoreUnavailable(t *testing.T) {
	e := newChaosEnv(t)
	const before, during = 50, 50
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tw := e.watchSigned(ctx)
	e.start()
	e.create(ctx, "before", 0, before, 4)
	e.waitAllSigned(ctx, before)

	away := e.storeDir + ".away"
	if err := os.Rename(e.storeDir, away); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.storeDir, []byte("not a directory\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	e.create(ctx, "during", 0, during, 4)
	time.Sleep(8 * time.Second)
	if got := tw.SignedCount(); got != before {
		t.Errorf("%d TaskRuns signed while the store was unavailable, want %d", got, before)
	}
	list, err := e.tekton.TektonV1().TaskRuns(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range list.Items {
		if s := tr.Annotations[annotations.Signed]; len(tr.Name) > 6 && tr.Name[:6] == "during" && s != "" {
			t.Errorf("%s annotated signed=%q while the store was unavailable", tr.Name, s)
		}
	}
	if !bytes.Contains(e.logs(), []byte("will retry")) {
		t.Errorf("the controller logged no retry while the store was unavailable")
	}

	if err := os.Remove(e.storeDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(away, e.storeDir); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	e.waitAllSigned(ctx, before+during)
	t.Logf("%d TaskRuns signed %v after the store came back", during, time.Since(restored).Round(time.Millisecond))
	e.verify(ctx, before+during, tw)
}

// logs returns the current controller process's log.
func (e *chaosEnv) logs() []byte {
	b, _ := os.ReadFile(filepath.Join(e.logDir, fmt.Sprintf("controller-%02d.log", e.starts)))
	return b
}

// TestChaosAPIServerRestarted restarts kube-apiserver while TaskRuns are
// being signed (killed if its graceful shutdown stalls, as after a crash):
// the controller's informers reconnect and every TaskRun, finished before,
// during or after the restart, is signed, with exactly one link per step and
// one provenance stored. (The test's own watch of annotation transitions
// does not survive the restart — client-go's RetryWatcher gives up on it —
// so exactly-once is asserted through the store, as in the other tests.)
func TestChaosAPIServerRestarted(t *testing.T) {
	e := newChaosEnv(t)
	const before, during, after = 30, 30, 30
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e.start()
	e.create(ctx, "before", 0, before, 4)
	e.waitAllSigned(ctx, before)

	// Finish a batch and restart at once, so signing is in flight.
	e.create(ctx, "during", 0, during, 4)
	e.cluster.Restart(t)
	e.create(ctx, "after", 0, after, 4)
	e.waitAllSigned(ctx, before+during+after)
	e.verify(ctx, before+during+after, nil)
}

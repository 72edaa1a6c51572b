package config

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// chaosTaskRunsEnv sets how many TaskRuns TestChaosPostgresServedLog runs
// per replica count (default chaosTaskRunsDefault; the README's figures
// are of 1000).
const (
	chaosTaskRunsEnv     = "STEPSEAL_CHAOS_TASKRUNS"
	chaosTaskRunsDefault = 120
)

// fiveSteps are the steps of the chaos test's TaskRuns: 5 links and 1
// provenance each.
var fiveSteps = []v1.Step{
	{Name: "fetch", Image: "alpine:3"},
	{Name: "generate", Image: "golang:1.26"},
	{Name: "build", Image: "golang:1.26"},
	{Name: "test", Image: "golang:1.26"},
	{Name: "push", Image: "crane:latest"},
}

// TestChaosPostgresServedLog runs 2, then 4, replicas of the controller
// binary on the "postgres" backend bound to one `stepseal log serve`
// process (storage.postgres.log.url: no shared volume), with Debian
// PostgreSQL, while N TaskRuns of 5 steps finish. During the run it
// SIGKILLs the replica holding the TaskRun Leases (and starts it again, as
// its Deployment would), SIGKILLs `log serve` and starts it again on the
// same directory and address, and stops PostgreSQL for 8 s while more
// TaskRuns finish. Then: no TaskRun created during the outage was marked
// signed while PostgreSQL was down, and none at all later than 2 s into it
// (a reconcile whose entries were all committed before the stop may still
// patch its annotation then); every TaskRun is signed exactly once; the
// database holds exactly 6 N rows and the served log exactly 6 N entries,
// the same documents (every log entry is a row's), all verified with the
// log's public key and the signing key; each TaskRun's
// stepseal.dev/log-index is its provenance's log index.
func TestChaosPostgresServedLog(t *testing.T) {
	n := chaosTaskRunsDefault
	if v := os.Getenv(chaosTaskRunsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 40 {
			t.Fatalf("%s=%q: want a number of TaskRuns, at least 40", chaosTaskRunsEnv, v)
		}
	}
	for _, replicas := range []int{2, 4} {
		t.Run(fmt.Sprintf("%d-replicas", replicas), func(t *testing.T) { chaosServed(t, replicas, n) })
	}
}

// logServeProc is a `stepseal log serve` process.
type logServeProc struct {
	bin, dir, addr, allow string
	log                   *os.File
	cmd                   *exec.Cmd
	exited                chan struct{}
}

func (p *logServeProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.bin, "log", "serve", p.dir, "--allow", p.allow, "--addr", p.addr, "--origin", "log.stepseal.test/chaos")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + p.addr + "/checkpoint")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("log serve exited: %v (log %s)", cmd.ProcessState, p.log.Name())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("log serve not serving after a minute: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *logServeProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// creating calls create(i) once for each i in [0, n) from workers
// goroutines, stopping a worker at its first error (reported) or when ctx
// ends; it returns at once, and the function it returns waits for all.
func creating(ctx context.Context, t *testing.T, workers, n int, create func(i int) error) (wait func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := create(i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	return wg.Wait
}

// readServed opens the store as a verifier does: read-only, with the
// database and the served log's URL and public key only.
func readServed(ctx context.Context, t *testing.T, ls *logServeProc, url, dsn string) (*logserver.Client, *pgstore.Store) {
	t.Helper()
	vdata, err := os.ReadFile(filepath.Join(ls.dir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := tlog.ParseVerifier(strings.TrimSpace(string(vdata)))
	if err != nil {
		t.Fatal(err)
	}
	client, err := logserver.NewClient(url, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pgstore.OpenServed(ctx, dsn, client, &pgstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return client, st
}

// buildLogServe builds the stepseal binary into dir and writes the
// controller's public key there for `log serve --allow`.
func buildLogServe(t *testing.T, s *setup, dir string) (bin, allow string) {
	t.Helper()
	bin = filepath.Join(dir, "stepseal")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stepseal/stepseal/images/stepseal").CombinedOutput(); err != nil {
		t.Fatalf("building stepseal: %v\n%s", err, out)
	}
	pubPEM, err := signing.MarshalPublicKeyPEM(s.key.pub)
	if err != nil {
		t.Fatal(err)
	}
	allow = filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(allow, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, allow
}

// startServedPostgres starts `log serve` on dir/served (its output in
// dir/log-serve.log; SIGTERMed when t ends), makes a database on pg, and
// configures the controllers' postgres backend on both (maxRetries):
// the log's URL and the database's DSN.
func startServedPostgres(t *testing.T, s *setup, pg *pgtest.Server, bin, allow, dir, maxRetries string) (ls *logServeProc, url, dsn string) {
	t.Helper()
	serveLog, err := os.Create(filepath.Join(dir, "log-serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serveLog.Close() })
	ls = &logServeProc{bin: bin, dir: filepath.Join(dir, "served"), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), allow: allow, log: serveLog}
	ls.start(t)
	t.Cleanup(func() {
		_ = ls.cmd.Process.Signal(syscall.SIGTERM)
		<-ls.exited
	})
	url = "http://" + ls.addr + "/"
	db := pg.NewDatabase(t)
	dsn = pg.TCPDSN(strings.Fields(db[strings.LastIndex(db, "dbname=")+len("dbname="):])[0])
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	configure(t, s.kube, map[string]string{
		settings.KeyBackends:             settings.BackendPostgres,
		settings.KeyPostgresDSNFile:      dsnFile,
		settings.KeyPostgresLogURL:       url,
		settings.KeyPostgresLogPublicKey: filepath.Join(ls.dir, "log.pub"),
		settings.KeyMaxRetries:           maxRetries,
	})
	return ls, url, dsn
}

func chaosServed(t *testing.T, replicas, n int) {
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{TCP: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+time.Duration(n)*time.Second)
	defer cancel()
	ns := s.cluster.Namespace(t)
	le := s.leaderElection(ctx, t)
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	// The processes' logs outlive a failed run.
	dir, err := os.MkdirTemp("", "chaos-served-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})

	stepseal, allow := buildLogServe(t, s, dir)
	ls, url, dsn := startServedPostgres(t, s, pg, stepseal, allow, dir, "10000")

	procs := make([]*controllerProc, replicas)
	procs[0] = startController(t, bin, kubeconfig, dir, "replica-0")
	waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) { return sameHolder(holders) })
	for i := 1; i < replicas; i++ {
		procs[i] = startController(t, bin, kubeconfig, dir, fmt.Sprintf("replica-%d", i))
	}

	tw := kubetest.WatchSigned(ctx, t, s.tekton, ns)
	create := func(name string, i int) error {
		tr, err := s.tekton.TektonV1().TaskRuns(ns).Create(ctx, &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: fiveSteps}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		_, err = kubetest.FinishTaskRun(ctx, s.tekton, tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", i)})
		return err
	}
	// TaskRuns created during the PostgreSQL outage; the rest up front,
	// by 4 writers.
	outage := max(n/10, 5)
	bulk := n - outage
	start := time.Now()
	producers := creating(ctx, t, 4, bulk, func(i int) error { return create(fmt.Sprintf("tr-%04d", i), i) })
	waitSigned := func(k int) {
		for tw.SignedCount() < k {
			if ctx.Err() != nil {
				t.Fatalf("%d TaskRuns signed, waited for %d", tw.SignedCount(), k)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// 1. SIGKILL the replica holding the TaskRun Leases; start it again.
	waitSigned(bulk / 4)
	holders, err := leaseHolders(ctx, s.kube)
	if err != nil {
		t.Fatal(err)
	}
	leaderID, _ := sameHolder(holders)
	victim := 0
	for i, p := range procs {
		if leaderID != "" && strings.Contains(string(p.output(t)), leaderID) {
			victim = i
		}
	}
	procs[victim].kill()
	t.Logf("%v: SIGKILLed %s (Lease holder %q) at %d signed", time.Since(start).Round(time.Millisecond), procs[victim].name, leaderID, tw.SignedCount())
	procs[victim] = startController(t, bin, kubeconfig, dir, procs[victim].name+"-restarted")

	// 2. SIGKILL log serve; start it again after 3 s.
	waitSigned(bulk / 2)
	ls.kill()
	t.Logf("%v: SIGKILLed log serve at %d signed", time.Since(start).Round(time.Millisecond), tw.SignedCount())
	time.Sleep(3 * time.Second)
	ls.start(t)
	t.Logf("%v: log serve restarted at %d signed", time.Since(start).Round(time.Millisecond), tw.SignedCount())

	// 3. Stop PostgreSQL for 8 s while outage TaskRuns finish; sample the
	// annotations meanwhile.
	waitSigned(bulk * 3 / 4)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	atStop := tw.SignedCount()
	for i := range outage {
		if err := create(fmt.Sprintf("outage-%04d", i), bulk+i); err != nil {
			t.Fatal(err)
		}
	}
	baseline := -1 // TaskRuns annotated signed in the first sample 2 s or more into the outage
	samples := 0
	for time.Since(stopped) < 8*time.Second {
		time.Sleep(500 * time.Millisecond)
		list, err := s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		signed := 0
		for _, tr := range list.Items {
			if tr.Annotations[annotations.Signed] == "" {
				continue
			}
			signed++
			if strings.HasPrefix(tr.Name, "outage-") {
				t.Errorf("%s annotated %s=%q while PostgreSQL was down", tr.Name, annotations.Signed, tr.Annotations[annotations.Signed])
			}
		}
		samples++
		switch into := time.Since(stopped); {
		case into < 2*time.Second:
		case baseline < 0:
			baseline = signed
		case signed != baseline:
			t.Errorf("%v into the PostgreSQL outage: %d TaskRuns annotated signed, %d in the first sample 2 s or more into it", into.Round(time.Millisecond), signed, baseline)
		}
	}
	if late := tw.SignedBetween(stopped.Add(2*time.Second), time.Now()); len(late) > 0 {
		t.Errorf("TaskRuns signed while PostgreSQL was down (2 s or more after the stop): %v", late)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if baseline < 0 {
		t.Errorf("no annotation sample 2 s or more into the PostgreSQL outage")
	}
	t.Logf("%v: PostgreSQL down for %v (%d annotation samples): %d signed at the stop, %d in its first 2 s (entries committed before it), none later",
		time.Since(start).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond), samples, atStop, len(tw.SignedBetween(stopped, stopped.Add(2*time.Second))))

	producers()
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, n)
	wall := time.Since(start)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%d TaskRuns of %d steps signed by %d replicas in %v (%.1f TaskRuns/s) through a replica SIGKILL, a log serve SIGKILL and an 8 s PostgreSQL outage; load average %s",
		n, len(fiveSteps), replicas, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), strings.Join(strings.Fields(string(load))[:3], " "))
	for _, p := range procs {
		if !p.running() {
			t.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
		}
	}

	// Read as a verifier: the database, the served log's URL and public key.
	client, st := readServed(ctx, t, ls, url, dsn)
	verifyEntriesOf(ctx, t, s.tekton, ns, st, s.key.pub, fiveSteps)
	tw.ExactlyOnce(ctx, t, s.tekton, ns, n)

	all, err := st.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := client.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := n * (len(fiveSteps) + 1)
	if len(all) != want || cp.Size != uint64(want) {
		t.Errorf("%d rows and %d served log entries for %d TaskRuns of %d steps, want %d of each", len(all), cp.Size, n, len(fiveSteps), want)
	}
	rows := map[string]bool{}
	provByRun := map[string]string{}
	for _, e := range all {
		rows[e.Digest] = true
		if e.Kind == store.KindProvenance {
			provByRun[e.RunID] = e.Digest
		}
	}
	logged := 0
	if err := client.Log().Audit(ctx, cp, 0, func(i uint64, data []byte) error {
		e, _, err := tlogstore.ParseRecord(data)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", i, err)
		}
		if !rows[e.Digest] {
			t.Errorf("served log entry %d (%s %q, %s) is no row's document", i, e.Kind, e.Name, e.Digest)
		}
		logged++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	list, err := s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range list.Items {
		got, err := strconv.ParseUint(tr.Annotations[annotations.LogIndex], 10, 64)
		if err != nil {
			t.Errorf("%s: %s = %q", tr.Name, annotations.LogIndex, tr.Annotations[annotations.LogIndex])
			continue
		}
		if want, err := st.LogIndex(ctx, provByRun[string(tr.UID)]); err != nil || got != want {
			t.Errorf("%s: %s = %d, its provenance's row says %d (%v)", tr.Name, annotations.LogIndex, got, want, err)
		}
	}
	t.Logf("%d TaskRuns: %d rows, %d served log entries (%d audited), all verified", n, len(all), cp.Size, logged)
}

package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestTwoReplicasPostgres runs two replicas of the controller binary on the
// "postgres" backend: one database (its connection string in a file, as a
// mounted Secret gives it) and one log directory both append to. Replica a
// signs TaskRuns, is SIGKILLed, replica b takes the Leases over and signs
// the rest. Every TaskRun is signed once, the database holds exactly one
// verified link per step and one provenance per TaskRun, each row's record
// is in the log (read back with the log's public key only), every log
// record is a row's (no duplicate), and each TaskRun's
// stepseal.dev/log-index is its provenance's.
func TestTwoReplicasPostgres(t *testing.T) {
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	le := s.leaderElection(ctx, t)
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	dir := t.TempDir()

	pgb := configurePostgres(t, s, pg, pg.NewDatabase(t), dir, nil)

	a := startController(t, bin, kubeconfig, dir, "replica-a")
	waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) { return sameHolder(holders) })
	b := startController(t, bin, kubeconfig, dir, "replica-b")
	idB := waitLogged(ctx, t, b, "stepseal-taskrun.00-of-")

	tw := kubetest.WatchSigned(ctx, t, s.tekton, ns)
	var created atomic.Int64
	create := func(prefix string, n int) {
		for i := range n {
			if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("%s-%03d", prefix, i), int(created.Add(1))); err != nil {
				t.Fatal(err)
			}
		}
		kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, int(created.Load()))
	}
	start := time.Now()
	create("a", 40)
	first := time.Since(start)
	a.kill()
	waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) {
		id, ok := sameHolder(holders)
		return id, ok && id == idB
	})
	start = time.Now()
	create("b", 40)
	second := time.Since(start)
	n := int(created.Load())
	signedBy := func(p *controllerProc) int { return countSigned(t, p) }
	t.Logf("40 TaskRuns signed by replica-a in %v (%d signed lines), 40 by replica-b in %v (%d) after a's SIGKILL",
		first.Round(time.Millisecond), signedBy(a), second.Round(time.Millisecond), signedBy(b))
	if signedBy(a) == 0 || signedBy(b) == 0 {
		t.Fatalf("replica-a signed %d, replica-b %d TaskRuns: want both to have written to the shared store", signedBy(a), signedBy(b))
	}

	// Read the store as a verifier does: the database and the log's public
	// key, nothing the replicas hold.
	st := pgb.readOnly(ctx, t)
	verifyEntries(ctx, t, s.tekton, ns, st, s.key.pub)
	tw.ExactlyOnce(ctx, t, s.tekton, ns, n)

	all, err := st.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := pgb.logClient().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := n * (len(steps) + 1); len(all) != want || cp.Size != uint64(want) {
		t.Errorf("%d rows and %d log entries for %d TaskRuns of %d steps, want %d of each", len(all), cp.Size, n, len(steps), want)
	}
	list, err := s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	provByRun := map[string]string{}
	for _, e := range all {
		if e.Kind == store.KindProvenance {
			provByRun[e.RunID] = e.Digest
		}
	}
	for _, tr := range list.Items {
		got, err := strconv.ParseUint(tr.Annotations[annotations.LogIndex], 10, 64)
		if err != nil {
			t.Fatalf("%s: %s = %q", tr.Name, annotations.LogIndex, tr.Annotations[annotations.LogIndex])
		}
		want, err := st.LogIndex(ctx, provByRun[string(tr.UID)])
		if err != nil || got != want {
			t.Errorf("%s: %s = %d, its provenance's row says %d (%v)", tr.Name, annotations.LogIndex, got, want, err)
		}
	}
	t.Logf("%d TaskRuns: %d rows, %d log entries, all verified", n, len(all), cp.Size)
}

// countSigned counts the TaskRuns and PipelineRuns p logged as signed (the
// reconciler's "signed" line is the one with "entries").
func countSigned(t *testing.T, p *controllerProc) int {
	return bytes.Count(p.output(t), []byte(`"entries":`))
}

type pgBackend struct {
	dsn    string
	logDir string
	key    tlog.Key
}

// logClient reads the backend's log with its public key only.
func (pgb pgBackend) logClient() *tlog.Client {
	return tlog.NewClient(filepath.Join(pgb.logDir, "log"), pgb.key.Verifier)
}

// readOnly opens the database read-only, every row re-verified against the
// backend's log (logClient); closed when the test ends.
func (pgb pgBackend) readOnly(ctx context.Context, t *testing.T) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(ctx, pgb.dsn, pgstore.ReadOnly(pgb.logClient()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// configurePostgres points stepseal-config at the postgres backend: the DSN
// in a file (as a mounted Secret gives it), the log in dir/pglog with a key
// made here, extra settings on top.
func configurePostgres(t *testing.T, s *setup, pg *pgtest.Server, dsn, dir string, extra map[string]string) pgBackend {
	t.Helper()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "pglog")
	key, err := tlog.WriteKeyFiles(filepath.Join(dir, "log.key"), filepath.Join(dir, "log.pub"), "stepseal.dev/pg-test")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{
		settings.KeyBackends:          settings.BackendPostgres,
		settings.KeyPostgresDSNFile:   dsnFile,
		settings.KeyPostgresLogDir:    logDir,
		settings.KeyPostgresLogKey:    filepath.Join(dir, "log.key"),
		settings.KeyPostgresLogOrigin: "stepseal.dev/pg-test",
	}
	for k, v := range extra {
		data[k] = v
	}
	configure(t, s.kube, data)
	return pgBackend{dsn: dsn, logDir: logDir, key: key}
}

// TestPostgresOutageController stops PostgreSQL for 8 s while TaskRuns
// finish: none is marked signed meanwhile (the controller retries), all are
// signed and stored exactly once after the restart, and neither the
// controller's log nor any annotation shows the database password.
func TestPostgresOutageController(t *testing.T) {
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{TCP: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	dir := t.TempDir()
	pg.NewDatabase(t)
	pgb := configurePostgres(t, s, pg, pg.TCPDSN("t1"), dir, map[string]string{settings.KeyMaxRetries: "10000"})
	ctrl := startController(t, bin, kubeconfig, dir, "replica")

	tw := kubetest.WatchSigned(ctx, t, s.tekton, ns)
	const before, during = 10, 10
	for i := range before {
		if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("before-%03d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, before)

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range during {
		if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("during-%03d", i), before+i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(8 * time.Second)
	if got := tw.SignedCount(); got != before {
		t.Errorf("%d TaskRuns signed while PostgreSQL was down, want %d", got, before)
	}
	list, err := s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range list.Items {
		if v := tr.Annotations[annotations.Signed]; strings.HasPrefix(tr.Name, "during") && v != "" {
			t.Errorf("%s annotated signed=%q while PostgreSQL was down", tr.Name, v)
		}
	}
	if !bytes.Contains(ctrl.output(t), []byte("will retry")) {
		t.Errorf("the controller logged no retry while PostgreSQL was down")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, before+during)
	t.Logf("%d TaskRuns signed %v after PostgreSQL came back", during, time.Since(restarted).Round(time.Millisecond))

	st := pgb.readOnly(ctx, t)
	verifyEntries(ctx, t, s.tekton, ns, st, s.key.pub)
	tw.ExactlyOnce(ctx, t, s.tekton, ns, before+during)

	if bytes.Contains(ctrl.output(t), []byte(pg.Password)) {
		t.Errorf("the controller's log shows the database password")
	}
	list, err = s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range list.Items {
		for k, v := range tr.Annotations {
			if strings.Contains(v, pg.Password) {
				t.Errorf("%s: annotation %s shows the database password", tr.Name, k)
			}
		}
	}
}

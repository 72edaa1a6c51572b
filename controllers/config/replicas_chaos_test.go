package config

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// TestChaosFourReplicasPostgresDir runs four replicas of the controller binary
// on one PostgreSQL store and one log directory while TaskRuns finish in
// four waves; after each wave something fails: a replica SIGKILLed (three
// times, each restarted), and PostgreSQL stopped for 3 s once. Every
// TaskRun is signed exactly once, the database holds one verified row per
// step and one provenance per TaskRun (read back with the log's public key
// only), each TaskRun's stepseal.dev/log-index is its provenance's, and
// every log entry is a row's record, an alias of one, or a superseded
// attempt of a row's run and name (see below). STEPSEAL_REPLICA_TASKRUNS
// sets how many TaskRuns (default 60).
func TestChaosFourReplicasPostgresDir(t *testing.T) {
	n := 60
	if v := os.Getenv("STEPSEAL_REPLICA_TASKRUNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 4 {
			t.Fatalf("STEPSEAL_REPLICA_TASKRUNS=%q", v)
		}
	}
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{TCP: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	dir := t.TempDir()
	pg.NewDatabase(t)
	pgb := configurePostgres(t, s, pg, pg.TCPDSN("t1"), dir, map[string]string{settings.KeyMaxRetries: "10000"})

	var procs []*controllerProc
	replicas := make([]*controllerProc, 4)
	for i := range replicas {
		replicas[i] = startController(t, bin, kubeconfig, dir, fmt.Sprintf("replica-%d", i))
		procs = append(procs, replicas[i])
	}
	restart := func(i int) {
		replicas[i].kill()
		replicas[i] = startController(t, bin, kubeconfig, dir, fmt.Sprintf("replica-%d-after-kill-%d", i, len(procs)))
		procs = append(procs, replicas[i])
	}
	chaos := []struct {
		what string
		do   func()
	}{
		{"replica-0 SIGKILLed", func() { restart(0) }},
		{"replica-1 SIGKILLed", func() { restart(1) }},
		{"PostgreSQL stopped for 3 s", func() {
			if err := pg.Stop(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			if err := pg.Start(); err != nil {
				t.Fatal(err)
			}
		}},
		{"replica-2 SIGKILLed", func() { restart(2) }},
	}

	tw := kubetest.WatchSigned(ctx, t, s.tekton, ns)
	start := time.Now()
	created := 0
	for w, c := range chaos {
		for range n / len(chaos) {
			if _, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("w%d-%03d", w, created), created+1); err != nil {
				t.Fatal(err)
			}
			created++
		}
		// Let the wave get under way, then fail something.
		time.Sleep(time.Second)
		t.Logf("wave %d: %d TaskRuns created, %d signed; %s", w, created, tw.SignedCount(), c.what)
		c.do()
	}
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, created)
	elapsed := time.Since(start)

	st := pgb.readOnly(ctx, t)
	verifyEntries(ctx, t, s.tekton, ns, st, s.key.pub)
	tw.ExactlyOnce(ctx, t, s.tekton, ns, created)
	all, err := st.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := pgb.logClient().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := created * (len(steps) + 1); len(all) != want {
		t.Errorf("%d rows for %d TaskRuns of %d steps, want %d", len(all), created, len(steps), want)
	}
	// Every row's record is in the log (verifyEntries). The log may hold
	// more: a replica killed, or PostgreSQL failing, between a Put's log
	// append and its row's commit leaves that leaf behind. The controller
	// then signs the TaskRun again (a new signature: a new digest) and
	// stores that, so the leaf left behind is a superseded attempt: the
	// same run and name as a row, another document. A leaf of the same
	// document twice is an alias. The store's Audit classes every leaf and
	// refuses one that no row accounts for.
	rep, err := st.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rep.Others {
		t.Log(e)
	}
	superseded, aliases := rep.Count(pgstore.ClassSuperseded), rep.Count(pgstore.ClassAlias)
	if rep.Rows != len(all) || cp.Size != uint64(len(all)+aliases+superseded) {
		t.Errorf("%d log entries for %d rows (audit: %d), %d aliases and %d superseded attempts", cp.Size, len(all), rep.Rows, aliases, superseded)
	}
	provByRun := map[string]string{}
	for _, e := range all {
		if e.Kind == store.KindProvenance {
			provByRun[e.RunID] = e.Digest
		}
	}
	list, err := s.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
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
	var counts []string
	for _, p := range procs {
		counts = append(counts, fmt.Sprintf("%s %d", p.name, countSigned(t, p)))
	}
	t.Logf("%d TaskRuns signed in %v through 3 replica SIGKILLs and a PostgreSQL stop: %d rows, %d log entries (%d superseded attempts, %d aliases), all verified; signed lines per process: %s",
		created, elapsed.Round(time.Millisecond), len(all), cp.Size, superseded, aliases, strings.Join(counts, ", "))
}

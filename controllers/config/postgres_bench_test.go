package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/leaderelection"

	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// TestBenchReplicasPostgres measures TaskRuns signed per second on the
// postgres backend with one and with two controller replicas (half the
// TaskRun Leases handed to the second; the split is logged).
// Each run: STEPSEAL_BENCH_REPLICAS finished TaskRuns of 3 steps created
// from 8 goroutines, timed from the first create to all signed, then every
// row verified and rows == log entries. Off unless STEPSEAL_BENCH_REPLICAS
// is set (e.g. 300).
func TestBenchReplicasPostgres(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("STEPSEAL_BENCH_REPLICAS"))
	if n <= 0 {
		t.Skip("set STEPSEAL_BENCH_REPLICAS=N to run")
	}
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{Durable: true})
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	le := s.leaderElection(context.Background(), t)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average before: %s", load)
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("replicas-%d", replicas), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			ns := s.cluster.Namespace(t)
			dir := t.TempDir()
			pgb := configurePostgres(t, s, pg, pg.NewDatabase(t), dir, map[string]string{"max-retries": "1000"})
			procs, counts := replicasSplitting(ctx, t, s, le, bin, kubeconfig, dir, replicas)

			start := time.Now()
			creating(ctx, t, 8, n, func(i int) error {
				_, err := finishTaskRun(ctx, s.tekton, ns, fmt.Sprintf("tr-%04d", i), i)
				return err
			})()
			created := time.Since(start)
			kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, n)
			elapsed := time.Since(start)
			var signed []int
			for _, p := range procs {
				signed = append(signed, countSigned(t, p))
				p.stop()
				if keep := os.Getenv("STEPSEAL_BENCH_LOGS"); keep != "" {
					b, _ := os.ReadFile(p.log)
					_ = os.WriteFile(filepath.Join(keep, fmt.Sprintf("%d-%s.log", replicas, p.name)), b, 0o644)
				}
			}
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("%d replica(s), TaskRun Leases split %v: %d TaskRuns of %d steps created in %v, all signed after %v = %.1f TaskRuns/s (%.1f store writes/s); signed per replica %v; load average %s",
				replicas, counts, n, len(steps), created.Round(time.Millisecond), elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(),
				float64(n*(len(steps)+1))/elapsed.Seconds(), signed, load)

			st := pgb.readOnly(ctx, t)
			all, err := st.List(ctx, store.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			cp, err := pgb.logClient().Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// A Put cut short after its append (a replica stopped, a
			// reconcile that lost its Lease) leaves a log record no row
			// names: allowed, and reported.
			if want := n * (len(steps) + 1); len(all) != want || cp.Size < uint64(want) {
				t.Errorf("%d rows, %d log entries; want %d rows", len(all), cp.Size, want)
			}
			t.Logf("%d rows, all verified; %d log entries", len(all), cp.Size)
		})
	}
}

// replicasSplitting starts n (1 or 2) controller processes with args, the
// TaskRun Leases split evenly between them, and returns them with the
// number of Leases each holds. Replicas race for Leases and the first
// started takes them all; half are handed to the second as if it had won
// them (each elector then believes the Lease's holder), and the first
// replica's renew deadline is waited out, or both would sign the runs of
// those buckets meanwhile.
func replicasSplitting(ctx context.Context, t *testing.T, s *setup, le *leaderelection.Config, bin, kubeconfig, dir string, n int, args ...string) ([]*controllerProc, []int) {
	t.Helper()
	if err := s.kube.CoordinationV1().Leases(systemNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	procs := []*controllerProc{startController(t, bin, kubeconfig, dir, "replica-0", args...)}
	waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) { return sameHolder(holders) })
	if n == 2 {
		b := startController(t, bin, kubeconfig, dir, "replica-1", args...)
		procs = append(procs, b)
		handOver(ctx, t, s, waitLogged(ctx, t, b, "stepseal-taskrun.00-of-"), int(le.Buckets)/2)
	}
	split := map[string]int{}
	waitTaskRunLeases(ctx, t, s.kube, le.Buckets, func(holders map[string]string) (string, bool) {
		split = map[string]int{}
		for _, h := range holders {
			split[h]++
		}
		return "", len(split) == n
	})
	if n == 2 {
		time.Sleep(le.RenewDeadline + 2*le.RetryPeriod)
	}
	var counts []int
	for _, c := range split {
		counts = append(counts, c)
	}
	return procs, counts
}

// handOver sets the holder of k TaskRun Leases to id.
func handOver(ctx context.Context, t *testing.T, s *setup, id string, k int) {
	t.Helper()
	for moved := 0; moved < k; {
		leases, err := s.kube.CoordinationV1().Leases(systemNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		moved = 0
		for i := range leases.Items {
			l := &leases.Items[i]
			if !strings.Contains(l.Name, "."+taskrun.ControllerName+".") || l.Spec.HolderIdentity == nil {
				continue
			}
			if *l.Spec.HolderIdentity == id {
				moved++
				continue
			}
			if moved >= k {
				break
			}
			l.Spec.HolderIdentity = &id
			if _, err := s.kube.CoordinationV1().Leases(systemNS).Update(ctx, l, metav1.UpdateOptions{}); err == nil {
				moved++
			}
		}
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
	}
}

package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// TestBenchReplicasServed measures TaskRuns signed per second on the
// postgres backend bound to one `stepseal log serve` process
// (storage.postgres.log.url), with one and then two controller replicas,
// in one run. The TaskRun Leases are split evenly between the replicas
// (handOver): left to themselves, the first replica to start takes every
// bucket and the others sign nothing, which is why the chaos test's 2 and
// 4 replicas signed at the same rate. Each run: STEPSEAL_BENCH_SERVED
// finished TaskRuns of 5 steps (6 Puts each) created by 8 goroutines,
// timed from the first create to all signed; then every row verified and
// rows == served log entries. Beside the rate it logs the CPU time each
// replica and log serve used, and how busy the machine's cores were
// (/proc/stat), so the bound can be named. STEPSEAL_BENCH_ARGS adds flags
// to every replica (e.g. "-threads-per-controller 8"); the client QPS is
// -kube-api-qps 50 -kube-api-burst 100 per replica unless it sets them.
// Off unless STEPSEAL_BENCH_SERVED is set (e.g. 300). One command:
//
//	STEPSEAL_BENCH_SERVED=300 go test -count=1 -timeout 30m -run TestBenchReplicasServed -v ./controllers/config/
func TestBenchReplicasServed(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("STEPSEAL_BENCH_SERVED"))
	if n <= 0 {
		t.Skip("set STEPSEAL_BENCH_SERVED=N to run")
	}
	args := strings.Fields(os.Getenv("STEPSEAL_BENCH_ARGS"))
	if !strings.Contains(os.Getenv("STEPSEAL_BENCH_ARGS"), "kube-api-qps") {
		args = append(args, "-kube-api-qps", "50", "-kube-api-burst", "100")
	}
	s := setUp(t)
	pg := pgtest.Start(t, pgtest.Options{TCP: true, Durable: true})
	bin := buildController(t)
	kubeconfig := serviceAccountKubeconfig(t, s.cluster, s.kube)
	le := s.leaderElection(context.Background(), t)
	dir, err := os.MkdirTemp("", "bench-served-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	stepseal, allow := buildLogServe(t, s, dir)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average before: %s; replica flags %q", strings.TrimSpace(string(load)), args)
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("replicas-%d", replicas), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			ns := s.cluster.Namespace(t)
			run := filepath.Join(dir, strconv.Itoa(replicas))
			if err := os.MkdirAll(run, 0o755); err != nil {
				t.Fatal(err)
			}
			ls, url, dsn := startServedPostgres(t, s, pg, stepseal, allow, run, "1000")
			procs, counts := replicasSplitting(ctx, t, s, le, bin, kubeconfig, run, replicas, args...)
			cpu0 := procCPU(t, ls.cmd.Process.Pid)
			var rcpu0 []time.Duration
			for _, p := range procs {
				rcpu0 = append(rcpu0, procCPU(t, p.cmd.Process.Pid))
			}
			busy0, total0 := machineCPU(t)
			tree0 := treeCPU(t)

			start := time.Now()
			creating(ctx, t, 8, n, func(i int) error {
				tr, err := s.tekton.TektonV1().TaskRuns(ns).Create(ctx, &v1.TaskRun{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tr-%04d", i), Namespace: ns},
					Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: fiveSteps}},
				}, metav1.CreateOptions{})
				if err == nil {
					_, err = kubetest.FinishTaskRun(ctx, s.tekton, tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", i)})
				}
				return err
			})()
			created := time.Since(start)
			kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, n)
			elapsed := time.Since(start)
			busy1, total1 := machineCPU(t)
			tree1 := treeCPU(t)
			lsCPU := procCPU(t, ls.cmd.Process.Pid) - cpu0
			var signed []int
			var rcpu []string
			for i, p := range procs {
				rcpu = append(rcpu, (procCPU(t, p.cmd.Process.Pid) - rcpu0[i]).Round(10*time.Millisecond).String())
				signed = append(signed, countSigned(t, p))
				p.stop()
			}
			load, _ := os.ReadFile("/proc/loadavg")
			puts := n * (len(fiveSteps) + 1)
			t.Logf("%d replica(s), TaskRun Leases split %v: %d TaskRuns of %d steps created in %v, all signed after %v = %.1f TaskRuns/s (%.1f Puts/s); signed per replica %v; CPU: replicas %v, log serve %v (%.2f ms per Put); cores busy %.0f%% of %v; load average %s",
				replicas, counts, n, len(fiveSteps), created.Round(time.Millisecond), elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(),
				float64(puts)/elapsed.Seconds(), signed, rcpu, lsCPU.Round(10*time.Millisecond), float64(lsCPU.Milliseconds())/float64(puts),
				100*float64(busy1-busy0)/float64(total1-total0), elapsed.Round(time.Second), strings.Join(strings.Fields(string(load))[:3], " "))

			client, st := readServed(ctx, t, ls, url, dsn)
			all, err := st.List(ctx, store.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			cp, err := client.Log().Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != puts || cp.Size != uint64(puts) {
				t.Errorf("%d rows, %d served log entries; want %d of each", len(all), cp.Size, puts)
			}
			t.Logf("%d rows, all verified; %d served log entries", len(all), cp.Size)
			var used []string
			var ours time.Duration
			for comm, d := range tree1 {
				if d -= tree0[comm]; d >= 100*time.Millisecond {
					used = append(used, fmt.Sprintf("%s %v", comm, d.Round(10*time.Millisecond)))
					ours += d
				}
			}
			slices.Sort(used)
			t.Logf("CPU of this test's processes during the run, by command: %s; %v in all = %.0f%% of the machine's (%d cores)",
				strings.Join(used, ", "), ours.Round(10*time.Millisecond), 100*ours.Seconds()/(float64(total1-total0)*clockTick.Seconds()), runtime.NumCPU())
		})
	}
}

// clockTick is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU is the user and system CPU time process pid has used.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces), from field 3.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// treeCPU is the CPU time this test process and its descendants (the
// kube-apiserver, etcd, PostgreSQL, log serve, the replicas) have used, by
// command name; exited processes are not counted.
func treeCPU(t *testing.T) map[string]time.Duration {
	t.Helper()
	type proc struct {
		comm string
		ppid int
		cpu  time.Duration
	}
	procs := map[int]proc{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+2:]))
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[pid] = proc{comm: string(b[open+1 : end]), ppid: ppid, cpu: time.Duration(ut+st) * clockTick}
	}
	out := map[string]time.Duration{}
	self := os.Getpid()
	for pid, p := range procs {
		for a, n := pid, 0; a > 1 && n < 64; a, n = procs[a].ppid, n+1 {
			if a == self {
				out[p.comm] += p.cpu
				break
			}
		}
	}
	return out
}

// machineCPU is the CPU time of every core, busy and in total (/proc/stat).
func machineCPU(t *testing.T) (busy, total int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	for i, v := range f {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on Linux whatever the kernel's HZ).
const clockTicks = 100

// proc is a process whose CPU time is sampled.
type proc struct {
	name string
	pid  int
}

type procs []proc

// parsePIDs reads NAME=PID,NAME=PID.
func parsePIDs(s string) (procs, error) {
	var out procs
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, p, ok := strings.Cut(f, "=")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 {
			return nil, fmt.Errorf("bad -pids entry %q (NAME=PID)", f)
		}
		if _, err := cpuTicks(pid); err != nil {
			return nil, fmt.Errorf("-pids %s: %w", f, err)
		}
		out = append(out, proc{n, pid})
	}
	return out, nil
}

// cpuTicks is utime+stime of every thread of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces; fields resume after its closing ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	k, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	return u + k, nil
}

// sample reads every process's CPU ticks (-1 for one that is gone).
func (ps procs) sample() []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		t, err := cpuTicks(p.pid)
		if err != nil {
			t = -1
		}
		out[i] = t
	}
	return out
}

func (ps procs) header() string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%-10s ", p.name)
	}
	b.WriteString("total")
	return b.String()
}

// perPod is each process's CPU milliseconds per Pod between two samples.
func (ps procs) perPod(a, b []int64, pods int) string {
	var s strings.Builder
	var total float64
	for i := range ps {
		if a[i] < 0 || b[i] < 0 || pods == 0 {
			fmt.Fprintf(&s, "%-10s ", "?")
			continue
		}
		v := float64(b[i]-a[i]) * 1000 / clockTicks / float64(pods)
		total += v
		fmt.Fprintf(&s, "%-10.2f ", v)
	}
	fmt.Fprintf(&s, "%.2f", total)
	return s.String()
}

// profile runs, for each concurrency c, the baseline and the warm case for
// d each (c creators creating Pods without pause), while the
// kube-apiserver's /debug/pprof/profile records its CPU for the same d
// (written to prof/<case>-c<c>.pprof) and, for the process named perf in
// pids, `perf record -g` does the same (prof/<case>-c<c>.<name>.perf.data).
// It prints Pods created, p50/p99 and CPU ms per Pod of every process.
//
// A third case, "warm-no-mc", runs the warm case again with the mutating
// webhook's matchConditions removed (and restores them after), so that
// what they save is measured in the same run.
func profile(ctx context.Context, cfg *rest.Config, conc string, d time.Duration, out, pidList, prof string) error {
	ps, err := parsePIDs(pidList)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	warm, err := readLines(filepath.Join(out, "warm.txt"))
	if err != nil {
		return err
	}
	if prof != "" {
		if err := os.MkdirAll(prof, 0o755); err != nil {
			return err
		}
	}
	var levels []int
	for _, f := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		levels = append(levels, c)
	}
	for _, ns := range []string{baselineNS, webhookNS} {
		if _, err := run(ctx, kube, ns, fmt.Sprintf("pprime-%d", time.Now().UnixNano()), 1, 1, func(int) string { return warm[0] }); err != nil {
			return fmt.Errorf("priming %s: %w", ns, err)
		}
	}
	fmt.Printf("%-5s %-9s %-6s %-8s %-16s %s\n", "conc", "case", "pods", "pods/s", "p50/p99 ms", "CPU ms per Pod: "+ps.header())
	for _, c := range levels {
		for _, cs := range []struct{ name, ns string }{{"baseline", baselineNS}, {"warm", webhookNS}, {"warm-no-mc", webhookNS}} {
			tag := fmt.Sprintf("%s-c%d", cs.name, c)
			restore := func() {}
			if cs.name == "warm-no-mc" {
				r, err := dropMatchConditions(ctx, kube)
				if err != nil {
					return err
				}
				if r == nil {
					continue // none shipped: "warm" was already without
				}
				restore = r
			}
			var wg sync.WaitGroup
			var perr error
			if prof != "" {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b, err := kube.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
						Param("seconds", strconv.Itoa(int(d/time.Second))).Timeout(d + time.Minute).DoRaw(ctx)
					if err == nil {
						err = os.WriteFile(filepath.Join(prof, tag+".pprof"), b, 0o644)
					}
					perr = err
				}()
				for _, p := range ps {
					if p.name != "webhook" {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(p.pid),
							"-o", filepath.Join(prof, tag+"."+p.name+".perf.data"), "--", "sleep", strconv.Itoa(int(d/time.Second)))
						if b, err := cmd.CombinedOutput(); err != nil {
							fmt.Fprintf(os.Stderr, "perf record %s: %v: %s\n", p.name, err, b)
						}
					}()
				}
				time.Sleep(200 * time.Millisecond) // the profiles have started
			}
			t0 := ps.sample()
			lat, err := runFor(ctx, kube, cs.ns, fmt.Sprintf("p%d-%s", time.Now().UnixNano()%1e6, tag), c, d, warm[0])
			t1 := ps.sample()
			wg.Wait()
			restore()
			if err != nil {
				return fmt.Errorf("%s: %w", tag, err)
			}
			if perr != nil {
				return fmt.Errorf("kube-apiserver profile %s: %w", tag, perr)
			}
			fmt.Printf("%-5d %-9s %-6d %-8.1f %-16s %s\n", c, cs.name, len(lat), float64(len(lat))/d.Seconds(),
				ms(pct(lat, .5))+" / "+ms(pct(lat, .99)), ps.perPod(t0, t1, len(lat)))
		}
	}
	return nil
}

// runFor creates Pods of image in ns with c creators for d, and returns
// every create's latency.
func runFor(ctx context.Context, kube kubernetes.Interface, ns, prefix string, c int, d time.Duration, image string) ([]time.Duration, error) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs []error
		seq  atomic.Int64
		wg   sync.WaitGroup
	)
	end := time.Now().Add(d)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				i := seq.Add(1)
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%06d", prefix, i), Namespace: ns},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
				t0 := time.Now()
				_, err := kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return lat, fmt.Errorf("%d creates failed, first: %w", len(errs), errs[0])
	}
	return lat, nil
}

// dropMatchConditions removes the matchConditions of the mutating webhook
// resolve.stepseal.dev and returns what puts them back (nil if it had
// none). It waits until the apiserver calls the webhook for a digest-only
// Pod (a dry run's mutate count on the webhook would need its metrics; a
// fixed pause is enough for the apiserver's configuration informer).
func dropMatchConditions(ctx context.Context, kube kubernetes.Interface) (func(), error) {
	api := kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	m, err := api.Get(ctx, "stepseal-admission", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	saved := m.Webhooks[0].MatchConditions
	if len(saved) == 0 {
		return nil, nil
	}
	m.Webhooks[0].MatchConditions = nil
	if _, err := api.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second)
	return func() {
		m, err := api.Get(context.Background(), "stepseal-admission", metav1.GetOptions{})
		if err == nil {
			m.Webhooks[0].MatchConditions = saved
			_, err = api.Update(context.Background(), m, metav1.UpdateOptions{})
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "restoring matchConditions: %v\n", err)
		}
	}, nil
}

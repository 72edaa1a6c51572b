package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// Two more cases run the warm case again with matchConditions removed
// (and restored after), so that what they cost or save is measured in the
// same run: "warm-mut-mc" without the validating webhook's, "warm-no-mc"
// without either.
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
	ps = append(ps, proc{"loadgen", os.Getpid()})
	fmt.Printf("%-5s %-10s %-6s %-8s %-16s %s\n", "conc", "case", "pods", "pods/s", "p50/p99 ms", "CPU ms per Pod: "+ps.header())
	for _, c := range levels {
		for _, cs := range []struct {
			name, ns string
			drop     []string // webhooks whose matchConditions are removed for the case
		}{
			{"baseline", baselineNS, nil},
			{"warm", webhookNS, nil},
			{"warm-mut-mc", webhookNS, []string{"verify.stepseal.dev"}},
			{"warm-no-mc", webhookNS, []string{"verify.stepseal.dev", "resolve.stepseal.dev"}},
		} {
			tag := fmt.Sprintf("%s-c%d", cs.name, c)
			restore := func() {}
			if len(cs.drop) > 0 {
				r, err := dropMatchConditions(ctx, kube, cs.drop...)
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
			}
			time.Sleep(200 * time.Millisecond) // the profiles have started
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
			fmt.Printf("%-5d %-10s %-6d %-8.1f %-16s %s\n", c, cs.name, len(lat), float64(len(lat))/d.Seconds(),
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

// dropMatchConditions removes the matchConditions of the named Pod
// webhooks (resolve.stepseal.dev, verify.stepseal.dev) and returns what
// puts them back (nil if none had any), after a pause for the apiserver's
// configuration informer.
func dropMatchConditions(ctx context.Context, kube kubernetes.Interface, names ...string) (func(), error) {
	adm := kube.AdmissionregistrationV1()
	drop := func(n string) bool { return slices.Contains(names, n) }
	m, err := adm.MutatingWebhookConfigurations().Get(ctx, "stepseal-admission", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	v, err := adm.ValidatingWebhookConfigurations().Get(ctx, "stepseal-admission", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	savedM, savedV := m.DeepCopy(), v.DeepCopy()
	n := 0
	for i := range m.Webhooks {
		if drop(m.Webhooks[i].Name) && len(m.Webhooks[i].MatchConditions) > 0 {
			m.Webhooks[i].MatchConditions, n = nil, n+1
		}
	}
	for i := range v.Webhooks {
		if drop(v.Webhooks[i].Name) && len(v.Webhooks[i].MatchConditions) > 0 {
			v.Webhooks[i].MatchConditions, n = nil, n+1
		}
	}
	if n == 0 {
		return nil, nil
	}
	if _, err := adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	if _, err := adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second)
	return func() {
		bg := context.Background()
		for _, f := range []func() error{
			func() error {
				m, err := adm.MutatingWebhookConfigurations().Get(bg, "stepseal-admission", metav1.GetOptions{})
				if err == nil {
					for i := range m.Webhooks {
						m.Webhooks[i].MatchConditions = savedM.Webhooks[i].MatchConditions
					}
					_, err = adm.MutatingWebhookConfigurations().Update(bg, m, metav1.UpdateOptions{})
				}
				return err
			},
			func() error {
				v, err := adm.ValidatingWebhookConfigurations().Get(bg, "stepseal-admission", metav1.GetOptions{})
				if err == nil {
					for i := range v.Webhooks {
						v.Webhooks[i].MatchConditions = savedV.Webhooks[i].MatchConditions
					}
					_, err = adm.ValidatingWebhookConfigurations().Update(bg, v, metav1.UpdateOptions{})
				}
				return err
			},
		} {
			if err := f(); err != nil {
				fmt.Fprintf(os.Stderr, "restoring matchConditions: %v\n", err)
			}
		}
		time.Sleep(3 * time.Second)
	}, nil
}

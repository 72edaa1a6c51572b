package awslog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBenchReplicasAWS measures appends/s of two `log serve` replicas on
// the AWS driver (MariaDB + SeaweedFS) against one replica on the POSIX
// driver, in one run on the same host: STEPSEAL_BENCH_AWS documents per
// target (skipped without it), STEPSEAL_BENCH_WRITERS concurrent writers
// (default 128; the AWS driver publishes a checkpoint at most once a
// second, so each writer's appends are about a second apart). Documents
// are signed before the clock starts; every answer is verified. It
// prints appends/s, latency p50/p99, the CPU time per append of the
// replicas and of MariaDB and SeaweedFS (from /proc: it depends much less
// on the host's load than the rate) and the load average.
// hack/bench/log-aws.sh runs it.
func TestBenchReplicasAWS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("STEPSEAL_BENCH_AWS"))
	if n <= 0 {
		t.Skip("STEPSEAL_BENCH_AWS=N (documents per target) runs the benchmark")
	}
	writers := 128
	if w, err := strconv.Atoi(os.Getenv("STEPSEAL_BENCH_WRITERS")); err == nil && w > 0 {
		writers = w
	}
	sh := newShared(t)

	// One replica on the POSIX driver: `log serve DIR` as before.
	posix, err := sh.startPOSIX(t, "posix", sh.dirFor(t, "posix", sh.key))
	if err != nil {
		t.Fatal(err)
	}
	bench(t, sh, "1 replica, POSIX driver", []*replica{posix}, nil, n, writers)
	posix.cmd.Process.Kill()

	a, err := sh.start(t, "A", sh.dirFor(t, "a", sh.key))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sh.start(t, "B", sh.dirFor(t, "b", sh.key))
	if err != nil {
		t.Fatal(err)
	}
	bench(t, sh, "2 replicas, AWS driver (MariaDB + SeaweedFS)", []*replica{a, b}, []int{sh.db.Pid(), sh.s3.Pid()}, n, writers)
}

// startPOSIX starts `stepseal log serve DIR` on the POSIX driver.
func (sh *shared) startPOSIX(t *testing.T, name, dir string) (*replica, error) {
	t.Helper()
	return sh.startArgs(t, name, dir, "--batch-max-age", "50ms")
}

func bench(t *testing.T, sh *shared, what string, rs []*replica, others []int, n, writers int) {
	t.Helper()
	ctx := context.Background()
	docs := make([][]byte, n)
	for i := range docs {
		docs[i] = doc(t, sh.signer, fmt.Sprintf("bench-run-%d", i/6), fmt.Sprintf("%s-artifact-%d", what, i))
	}
	var pids []int
	for _, r := range rs {
		pids = append(pids, r.cmd.Process.Pid)
	}
	cpu0, ocpu0 := cpuOf(pids), cpuOf(others)
	load0 := loadavg()
	lat := make([]time.Duration, n)
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rs[w%len(rs)]
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				t0 := time.Now()
				if _, _, err := add(ctx, docs[i], r); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cpu, ocpu := cpuOf(pids)-cpu0, cpuOf(others)-ocpu0
	slices.Sort(lat)
	line := fmt.Sprintf("%s: %d appends by %d writers in %s: %.0f appends/s, p50 %s p99 %s; replicas' CPU %.2f ms/append",
		what, n, writers, el.Round(time.Millisecond), float64(n)/el.Seconds(), lat[n/2].Round(time.Millisecond), lat[n*99/100].Round(time.Millisecond),
		float64(cpu.Microseconds())/1000/float64(n))
	if len(others) > 0 {
		line += fmt.Sprintf(", MariaDB + SeaweedFS CPU %.2f ms/append", float64(ocpu.Microseconds())/1000/float64(n))
	}
	line += fmt.Sprintf("; load %s → %s", load0, loadavg())
	t.Log(line)
	fmt.Println("BENCH " + line)
}

// cpuOf is the user + system CPU time of the processes so far.
func cpuOf(pids []int) time.Duration {
	var ticks int64
	for _, p := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		// Fields after the name: state is 3rd in stat, so utime (14) and
		// stime (15) are at 11 and 12 here.
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / 100
}

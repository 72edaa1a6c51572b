// Command pgstore measures the postgres store backend (pkg/store/pgstore)
// on a throwaway PostgreSQL (pgtest, fsync on) and one Tessera log:
//
//   - writes/s and Put latency with 1 and 32 concurrent clients (each Put:
//     an advisory lock, a log append awaiting its checkpoint, two inserts);
//   - the same with two processes (two "replicas") appending to one log
//     directory and one database at once, then every row verified against
//     the log and rows == log entries (no index handed out twice);
//   - Get by subject latency (each answer re-verified against the log).
//
// Usage: go run ./hack/bench/pgstore [-clients 1,32] [-n 400] [-procs 2] [-reads 1000]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

func main() {
	clients := flag.String("clients", "1,32", "concurrent clients of each run")
	n := flag.Int("n", 400, "Puts per run (per process in the shared run)")
	procs := flag.Int("procs", 2, "processes of the shared run (0: skip it)")
	reads := flag.Int("reads", 1000, "Gets by subject")
	child := flag.Bool("child", false, "internal: one process of the shared run")
	dsn := flag.String("dsn", "", "internal")
	logDir := flag.String("log", "", "internal")
	keyFile := flag.String("key", "", "internal")
	offset := flag.Int("offset", 0, "internal")
	flag.Parse()
	if *child {
		c, _ := strconv.Atoi(*clients)
		if err := runChild(*dsn, *logDir, *keyFile, c, *n, *offset); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*clients, *n, *procs, *reads); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(clientList string, n, procs, reads int) error {
	ctx := context.Background()
	bin := pgtest.Bin()
	if bin == "" {
		return fmt.Errorf("PostgreSQL is not installed (hack/install-test-deps.sh)")
	}
	srv, err := pgtest.New(bin, pgtest.Options{Durable: true})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pgbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	keyFile := filepath.Join(work, "log.key")
	key, err := tlog.WriteKeyFiles(keyFile, filepath.Join(work, "log.pub"), "stepseal.dev/bench")
	if err != nil {
		return err
	}
	out, _ := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("%s; fsync on; %d-byte documents, 3 subjects each; load average %s", strings.TrimSpace(string(out)), docSize, load)

	db := 0
	newDB := func() (string, error) {
		db++
		name := fmt.Sprintf("bench%d", db)
		return srv.DSN(name), srv.Exec(ctx, "postgres", "CREATE DATABASE "+name)
	}
	var last *pgstore.Store
	for _, f := range strings.Split(clientList, ",") {
		c, err := strconv.Atoi(f)
		if err != nil || c < 1 {
			return fmt.Errorf("-clients: %q", f)
		}
		dsn, err := newDB()
		if err != nil {
			return err
		}
		l, err := tlog.Open(ctx, filepath.Join(work, fmt.Sprintf("log%d", db)), key, nil)
		if err != nil {
			return err
		}
		st, err := pgstore.Open(ctx, dsn, l, nil)
		if err != nil {
			return err
		}
		r, err := puts(ctx, st, c, n, 0)
		if err != nil {
			return err
		}
		fmt.Printf("1 process, %2d clients: %d Puts in %v = %.1f writes/s; Put p50 %v p99 %v\n", c, n, r.elapsed.Round(time.Millisecond), float64(n)/r.elapsed.Seconds(), r.p(50), r.p(99))
		if last != nil {
			last.Close(ctx)
		}
		last = st
		defer l.Close(ctx)
	}

	if procs > 0 {
		dsn, err := newDB()
		if err != nil {
			return err
		}
		shared := filepath.Join(work, "shared-log")
		l, err := tlog.Open(ctx, shared, key, nil) // creates it; closed before the children start
		if err != nil {
			return err
		}
		if err := l.Close(ctx); err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, procs)
		outs := make([][]byte, procs)
		for p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(self, "-child", "-dsn", dsn, "-log", shared, "-key", keyFile, "-clients", "16", "-n", strconv.Itoa(n), "-offset", strconv.Itoa(p*n))
				cmd.Stderr = os.Stderr
				outs[p], errs[p] = cmd.Output()
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		for p, err := range errs {
			if err != nil {
				return fmt.Errorf("process %d: %w", p, err)
			}
		}
		client := tlog.NewClient(shared, key.Verifier)
		st, err := pgstore.Open(ctx, dsn, pgstore.ReadOnly(client), nil)
		if err != nil {
			return err
		}
		vstart := time.Now()
		all, err := st.List(ctx, store.Filter{})
		if err != nil {
			return fmt.Errorf("verifying the shared run: %w", err)
		}
		cp, err := client.Checkpoint(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("%d processes x 16 clients, one log and one database: %d Puts in %v = %.1f writes/s (%s); %d rows, %d log entries, all verified in %v\n",
			procs, procs*n, elapsed.Round(time.Millisecond), float64(procs*n)/elapsed.Seconds(), strings.Join(strings.Fields(string(concat(outs))), " "), len(all), cp.Size, time.Since(vstart).Round(time.Millisecond))
		if len(all) != procs*n || cp.Size != uint64(procs*n) {
			return fmt.Errorf("shared run: %d rows and %d log entries for %d Puts", len(all), cp.Size, procs*n)
		}
		st.Close(ctx)
	}

	if last != nil && reads > 0 {
		var lat []time.Duration
		for range reads {
			sub := subject(rand.IntN(n) * 3)
			t0 := time.Now()
			if _, err := last.Get(ctx, sub); err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
		}
		r := result{lat: lat}
		fmt.Printf("Get by subject (verified against the log), %d entries: p50 %v p99 %v\n", n, r.p(50), r.p(99))
		last.Close(ctx)
	}
	return nil
}

func concat(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func runChild(dsn, logDir, keyFile string, clients, n, offset int) error {
	ctx := context.Background()
	key, err := tlog.ReadKey(keyFile)
	if err != nil {
		return err
	}
	l, err := tlog.Open(ctx, logDir, key, nil)
	if err != nil {
		return err
	}
	defer l.Close(ctx)
	st, err := pgstore.Open(ctx, dsn, l, nil)
	if err != nil {
		return err
	}
	defer st.Close(ctx)
	r, err := puts(ctx, st, clients, n, offset)
	if err != nil {
		return err
	}
	fmt.Printf("[%.1f/s p99 %v]\n", float64(n)/r.elapsed.Seconds(), r.p(99))
	return nil
}

const docSize = 1024

func subject(i int) string { return fmt.Sprintf("sha256:%064x", i) }

type result struct {
	elapsed time.Duration
	lat     []time.Duration
}

func (r result) p(q int) time.Duration {
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[(len(s)-1)*q/100].Round(100 * time.Microsecond)
}

// puts stores n documents from c goroutines.
func puts(ctx context.Context, st *pgstore.Store, c, n, offset int) (result, error) {
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
		errs = make(chan error, c)
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				k := offset + i
				data := make([]byte, docSize)
				copy(data, fmt.Sprintf(`{"doc":%d}`, k))
				e := store.Entry{Kind: store.KindLink, Name: fmt.Sprintf("step-%d", k), RunID: fmt.Sprintf("run-%d", k/6), Data: data,
					Subjects: []string{subject(3 * k), subject(3*k + 1), subject(3*k + 2)}}
				t0 := time.Now()
				if _, err := st.Put(ctx, e); err != nil {
					errs <- err
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	return result{elapsed: time.Since(start), lat: lat}, nil
}

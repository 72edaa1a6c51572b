package tlogstore

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

const crashEnv = "TLOGSTORE_CRASH_CHILD"

// crashChild runs in the re-executed test binary: it Puts entries from 4
// goroutines until it is killed, printing "<digest> <index>" for every Put
// that returned (a line is written only after the Put is durable).
func crashChild() {
	dir, round := os.Getenv(crashEnv), os.Getenv("TLOGSTORE_CRASH_ROUND")
	k, err := tlog.ParseKey(os.Getenv("TLOGSTORE_CRASH_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := Open(ctx, dir, k, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				data := fmt.Sprintf("round %s writer %d entry %d", round, w, n)
				if n%5 == 4 {
					data = fmt.Sprintf("round 0 writer %d entry 0", w) // an old one again: idempotent
				}
				d, i, err := s.PutIndexed(ctx, link(fmt.Sprintf("w%d.%d", w, n), data, subject(w)))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%s %d\n", d, i)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		crashChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCrashKill kills a writing process (SIGKILL, no shutdown) at random
// moments, several times, and checks after each restart that every Put that
// returned is in the store at the index it returned, and that the index
// equals one rebuilt from the log alone.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	skey, _, err := tlog.GenerateKey("stepseal.test/crash")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	returned := map[string]uint64{}
	for round := 0; round < 6; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, "TLOGSTORE_CRASH_KEY="+skey, "TLOGSTORE_CRASH_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Let it write a while (at least 3 Puts), then kill it mid-append.
		seen := 0
		deadline := time.After(30 * time.Second)
		var got []string
	wait:
		for seen < 3 {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited early: %v\n%s", round, cmd.Wait(), stderr.String())
				}
				got = append(got, l)
				seen++
			case <-deadline:
				break wait
			}
		}
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines {
			got = append(got, l)
		}
		_ = cmd.Wait()
		for _, l := range got {
			d, i, ok := strings.Cut(l, " ")
			n, err := strconv.ParseUint(i, 10, 64)
			if !ok || err != nil {
				t.Fatalf("round %d: child printed %q", round, l)
			}
			if prev, ok := returned[d]; ok && prev != n {
				t.Fatalf("round %d: %s returned index %d, earlier %d", round, d, n, prev)
			}
			returned[d] = n
		}

		s, err := Open(ctx, dir, k, nil)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for d, i := range returned {
			li, err := s.LogIndex(d)
			if err != nil || li != i {
				t.Fatalf("round %d: %s: log index %d, %v; Put returned %d", round, d, li, err, i)
			}
			if _, err := s.Fetch(ctx, d); err != nil {
				t.Fatalf("round %d: Fetch(%s): %v", round, d, err)
			}
		}
		cp, err := s.Log().Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := s.List(ctx, store.Filter{})
		if err != nil || uint64(len(all)) != cp.Size {
			// Every record holds a distinct entry here (no subject merges).
			t.Fatalf("round %d: %d entries listed, log has %d, %v", round, len(all), cp.Size, err)
		}
		before := indexState(s)
		if err := s.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		if indexState(s) != before {
			t.Fatalf("round %d: index after restart differs from one rebuilt from the log", round)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d Puts returned in total, log has %d entries", round, len(returned), cp.Size)
	}
}

package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// The test binary run as one replica process (TestTwoProcesses).
const childEnv = "PGSTORE_TEST_CHILD"

// childMain stores one document from 8 goroutines: with subject 1 only
// (phase "same"), or each with a subject of its own, 100+8*ID+i ("union").
func childMain() int {
	ctx := context.Background()
	key, err := tlog.ParseKey(os.Getenv("PGSTORE_TEST_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := tlog.Open(ctx, os.Getenv("PGSTORE_TEST_LOG"), key, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close(ctx)
	if os.Getenv("PGSTORE_TEST_PHASE") == "crash" {
		return crashAfterAppend(ctx, l)
	}
	st, err := pgstore.Open(ctx, os.Getenv("PGSTORE_TEST_DSN"), l, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close(ctx)
	id, _ := strconv.Atoi(os.Getenv(childEnv))
	union := os.Getenv("PGSTORE_TEST_PHASE") == "union"
	var wg sync.WaitGroup
	var failed bool
	var mu sync.Mutex
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := subject(1)
			if union {
				sub = subject(100 + 8*id + i)
			}
			if _, err := st.Put(ctx, store.Entry{Kind: store.KindProvenance, Name: "run", RunID: "r", Data: []byte("one document"), Subjects: []string{sub}}); err != nil {
				mu.Lock()
				failed = true
				mu.Unlock()
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

// TestTwoProcesses: two replica processes, each with its own log appender
// on one log directory and its own pool on one database, store one
// document from 8 goroutines each: one row, one log entry. Then each
// goroutine adds a subject of its own: 16 more log entries (each Put saw the
// one before it), and the row has all 17 subjects, verified.
func TestTwoProcesses(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	ctx := context.Background()
	if err := f.log.Close(ctx); err != nil { // the children append; this process only reads
		t.Fatal(err)
	}
	client := tlog.NewClient(f.logDir, f.key.Verifier)
	size := func() uint64 {
		cp, err := client.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	phase := func(name string) {
		var wg sync.WaitGroup
		for id := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(id), "PGSTORE_TEST_KEY="+f.skey,
					"PGSTORE_TEST_LOG="+f.logDir, "PGSTORE_TEST_DSN="+f.dsn, "PGSTORE_TEST_PHASE="+name)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("replica process %d, phase %s: %v\n%s", id, name, err, out)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	phase("same")
	if n := size(); n != 1 {
		t.Fatalf("16 writers in two processes stored one document: %d log entries, want 1", n)
	}
	phase("union")
	if n := size(); n != 17 {
		t.Fatalf("16 writers in two processes each added a subject: %d log entries, want 17", n)
	}
	st, err := pgstore.Open(ctx, f.dsn, pgstore.ReadOnly(client), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	all, err := st.List(ctx, store.Filter{})
	if err != nil || len(all) != 1 || len(all[0].Subjects) != 17 {
		t.Fatalf("List = %d entries, %v; want one with 17 subjects", len(all), err)
	}
	i, err := st.LogIndex(ctx, all[0].Digest)
	if err != nil || i != 16 {
		t.Fatalf("the row names log entry %d (%v), want the newest, 16", i, err)
	}
}

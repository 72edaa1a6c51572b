package logserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestMain runs a log server instead of the tests when the crash test
// starts this binary as its child.
func TestMain(m *testing.M) {
	if dir := os.Getenv("LOGSERVER_CHILD_DIR"); dir != "" {
		if err := serveChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func serveChild(dir string) error {
	key, err := tlog.ReadKey(filepath.Join(dir, "log.key"))
	if err != nil {
		return err
	}
	v, err := signing.LoadVerifier(filepath.Join(dir, "writer.pub"))
	if err != nil {
		return err
	}
	srv, err := Open(ctx, filepath.Join(dir, "data"), key, Options{Keys: Keys{v}})
	if err != nil {
		return err
	}
	// Fault injection: die (SIGKILL, no cleanup) when the index is about
	// to commit the row of this digest, after its leaf is in the log.
	if d := os.Getenv("LOGSERVER_CHILD_DIE_BEFORE_INDEXING"); d != "" {
		hook := func(rows []Row) {
			for _, r := range rows {
				if r.Digest == d {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {}
				}
			}
		}
		srv.Index().beforeCommit.Store(&hook)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "addr.tmp"), []byte(ln.Addr().String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "addr.tmp"), filepath.Join(dir, "addr")); err != nil {
		return err
	}
	return http.Serve(ln, srv.Handler())
}

func startChild(t *testing.T, dir string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr"))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "LOGSERVER_CHILD_DIR="+dir), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "addr")); err == nil {
			return cmd, "http://" + string(b) + "/"
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatal("child server did not start")
	return nil, ""
}

// TestCrashDuringBurst kills a serving process with SIGKILL while 32
// writers append, restarts it, and checks that every acknowledged
// (digest, index) is in the log once, answers the same index and is found
// once by a search; STEPSEAL_CRASH_ROUNDS sets how many times (default 2).
func TestCrashDuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	rounds := 2
	if s := os.Getenv("STEPSEAL_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("STEPSEAL_CRASH_ROUNDS=%q", s)
		}
		rounds = n
	}
	dir := t.TempDir()
	key, err := tlog.WriteKeyFiles(filepath.Join(dir, "log.key"), filepath.Join(dir, "log.pub"), "log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	signer := signingtest.SignerOf(t, signing.ED25519)
	pub, _ := signing.MarshalPublicKeyPEM(signer.Public())
	os.WriteFile(filepath.Join(dir, "writer.pub"), pub, 0o644)

	allAcked := map[string]uint64{}
	for round := range rounds {
		cmd, url := startChild(t, dir)
		var mu sync.Mutex
		acked := map[string]uint64{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, _ := NewClient(url, key.Verifier, &http.Client{Timeout: 20 * time.Second})
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					doc := provenance(t, signer, fmt.Sprintf("round-%d", round), fmt.Sprintf("r%d-w%d-%d", round, w, i), "base")
					v, err := c.Add(ctx, doc)
					if err != nil {
						if errors.Is(err, reject.ErrUnableToCheck) {
							return // the server died
						}
						t.Errorf("add: %v", err)
						return
					}
					mu.Lock()
					acked[v.Entry.Digest] = v.Index
					mu.Unlock()
				}
			}()
		}
		for {
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= 150 {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		wg.Wait()

		restart := time.Now()
		cmd, url = startChild(t, dir)
		up := time.Since(restart)
		c, _ := NewClient(url, key.Verifier, nil)
		for d, i := range acked {
			allAcked[d] = i
		}
		for d, i := range allAcked {
			v, err := c.Get(ctx, d)
			if err != nil || v.Index != i {
				t.Fatalf("round %d: acknowledged %s at %d, after restart: %d %v", round, d, i, v.Index, err)
			}
		}
		// Each acknowledged digest is one leaf of the log.
		cp, err := c.Log().Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leaves := map[string]int{}
		if err := c.Log().Audit(ctx, cp, 0, func(_ uint64, leaf []byte) error {
			e, _, err := tlogstore.ParseRecord(leaf)
			if err != nil {
				return err
			}
			leaves[e.Digest]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for d := range allAcked {
			if leaves[d] != 1 {
				t.Fatalf("acknowledged %s is %d leaves", d, leaves[d])
			}
		}
		found := map[string]int{}
		if _, err := c.SearchAll(ctx, Query{Subject: subject("base")}, 0, MaxLimit, func(r VerifiedResult) error {
			found[r.Entry.Digest]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for d := range allAcked {
			if found[d] != 1 {
				t.Fatalf("round %d: acknowledged %s found %d times by search", round, d, found[d])
			}
		}
		if rep, err := Audit(ctx, c, filepath.Join(t.TempDir(), "audit.db"), []Query{{Subject: subject("base")}}); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("round %d: %d acknowledged before SIGKILL, restart to serving %v, log of %d entries, %d aliases, audit of %d results passed", round, len(acked), up.Round(time.Millisecond), cp.Size, len(rep.Aliases), rep.Results)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

// TestCrashBetweenAppendAndIndexCommit injects the fault: the server
// process is SIGKILLed inside the index transaction that would commit a
// document's row, after its leaf is durable in the log. After a restart the
// entry is indexed once (Get, search, a re-add all answer the first index;
// one leaf). Then a second leaf of the same document is appended to the log
// behind the server's back (a second sequencer, or a retry through another
// writer): the index records it as an alias, search and Get still answer
// the first leaf once, and Audit reports the alias by log index.
func TestCrashBetweenAppendAndIndexCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	key, err := tlog.WriteKeyFiles(filepath.Join(dir, "log.key"), filepath.Join(dir, "log.pub"), "log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	signer := signingtest.SignerOf(t, signing.ED25519)
	pub, _ := signing.MarshalPublicKeyPEM(signer.Public())
	if err := os.WriteFile(filepath.Join(dir, "writer.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	before := provenance(t, signer, "run-c", "before", "base")
	doc := provenance(t, signer, "run-c", "victim", "base")
	digest := store.Digest(doc)

	cmd, url := startChild(t, dir, "LOGSERVER_CHILD_DIE_BEFORE_INDEXING="+digest)
	c, _ := NewClient(url, key.Verifier, &http.Client{Timeout: 20 * time.Second})
	if _, err := c.Add(ctx, before); err != nil {
		t.Fatal(err)
	}
	_, err = c.Add(ctx, doc)
	if !errors.Is(err, reject.ErrUnableToCheck) {
		t.Fatalf("add through a server killed before indexing: %v, want a failure to check", err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the server was not killed by the fault: %v", err)
	}
	// The leaf is in the log, the row is not in the index.
	idx, err := OpenIndex(filepath.Join(dir, "data", "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, found, err := idx.Lookup(digest)
	w, _ := idx.Watermark()
	idx.Close()
	if err != nil || found || w != 1 {
		t.Fatalf("after the fault: indexed %v, watermark %d, %v; want not indexed, watermark 1", found, w, err)
	}

	cmd, url = startChild(t, dir)
	c, _ = NewClient(url, key.Verifier, nil)
	g, err := c.Get(ctx, digest)
	if err != nil || g.Index != 1 {
		t.Fatalf("after restart: %+v %v, want log entry 1", g.Index, err)
	}
	again, err := c.Add(ctx, doc)
	if err != nil || again.Index != 1 || again.Created {
		t.Fatalf("re-add after restart: index %d created %v %v", again.Index, again.Created, err)
	}
	if n := searchCount(t, c, Query{Subject: subject("victim")}); n != 1 {
		t.Fatalf("search after restart: %d results", n)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	// A second leaf of the same document, appended behind the server.
	v, err := signing.LoadVerifier(filepath.Join(dir, "writer.pub"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Derive(ctx, doc, Keys{v})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tlogstore.EncodeInlineRecord(e)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tlog.Open(ctx, filepath.Join(dir, "data", "log"), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.Append(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)
	if second != 2 {
		t.Fatalf("second leaf at %d, want 2", second)
	}

	cmd, url = startChild(t, dir)
	defer func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }()
	c, _ = NewClient(url, key.Verifier, nil)
	if g, err := c.Get(ctx, digest); err != nil || g.Index != 1 {
		t.Fatalf("Get with an alias in the log: %d %v, want the first leaf 1", g.Index, err)
	}
	var got []uint64
	if _, err := c.SearchAll(ctx, Query{Subject: subject("victim")}, 0, MaxLimit, func(r VerifiedResult) error {
		got = append(got, r.Index)
		return nil
	}); err != nil || len(got) != 1 || got[0] != 1 {
		t.Fatalf("search with an alias in the log: %v %v, want [1]", got, err)
	}
	if n := searchCount(t, c, Query{Subject: subject("base")}); n != 2 {
		t.Fatalf("search of the shared subject: %d results, want 2 (before, victim once)", n)
	}
	rep, err := Audit(ctx, c, filepath.Join(t.TempDir(), "audit.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Aliases) != 1 || rep.Aliases[2] != digest {
		t.Fatalf("audit aliases %v, want log entry 2 = %s", rep.Aliases, digest)
	}
}

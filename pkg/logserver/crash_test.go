package logserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
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

func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr"))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOGSERVER_CHILD_DIR="+dir)
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
// (digest, index) is in the log once and answers the same index.
func TestCrashDuringBurst(t *testing.T) {
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
	os.WriteFile(filepath.Join(dir, "writer.pub"), pub, 0o644)

	for round := range 2 {
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

		cmd, url = startChild(t, dir)
		c, _ := NewClient(url, key.Verifier, nil)
		for d, i := range acked {
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
		for d := range acked {
			if leaves[d] != 1 {
				t.Fatalf("acknowledged %s is %d leaves", d, leaves[d])
			}
		}
		if rep, err := Audit(ctx, c, filepath.Join(t.TempDir(), "audit.db"), []Query{{Subject: subject("base")}}); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("round %d: %d acknowledged before SIGKILL, log of %d entries, %d aliases, audit of %d results passed", round, len(acked), cp.Size, len(rep.Aliases), rep.Results)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestMain runs the CLI instead of the tests when a test starts this binary
// as a `stepseal` child (STEPSEAL_TEST_ARGS: its arguments, JSON).
func TestMain(m *testing.M) {
	if args := os.Getenv("STEPSEAL_TEST_ARGS"); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			panic(err)
		}
		os.Args = append([]string{"stepseal"}, a...)
		Main(nil)
		return
	}
	os.Exit(m.Run())
}

// startServe starts `stepseal log serve` as a child process and returns it
// with its URL, once it serves.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	a, _ := json.Marshal(append([]string{"log", "serve"}, args...))
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), "STEPSEAL_TEST_ARGS="+string(a))
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "serving") {
				lines <- l
			}
		}
	}()
	select {
	case l := <-lines:
		_, rest, _ := strings.Cut(l, " at ")
		url, _, _ := strings.Cut(rest, ";")
		return c, url
	case <-time.After(60 * time.Second):
		c.Process.Kill()
		t.Fatal("stepseal log serve did not start")
	}
	return nil, ""
}

// writerKey is a new ed25519 writer key, its public half written to
// dir/writer.pub (what `log serve --allow` takes).
func writerKey(t *testing.T, dir string) (signing.Signer, string) {
	t.Helper()
	s := signingtest.SignerOf(t, signing.ED25519)
	pub := filepath.Join(dir, "writer.pub")
	pem, err := signing.MarshalPublicKeyPEM(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return s, pub
}

func provenanceDoc(t *testing.T, s signing.Signer, name string) []byte {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject": []map[string]any{
			{"name": name, "digest": map[string]string{"sha256": strings.TrimPrefix(store.Digest([]byte(name)), "sha256:")}},
			{"name": "base", "digest": map[string]string{"sha256": strings.TrimPrefix(store.Digest([]byte("base")), "sha256:")}},
		},
		"predicate": map[string]any{"runDetails": map[string]any{"metadata": map[string]any{"invocationId": "crash"}}},
	})
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, payload, s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(env)
	return b
}

// TestLogServeSIGKILL kills `stepseal log serve` with SIGKILL while 32
// writers append, restarts it, and checks that every acknowledged
// (digest, index) answers the same index and is one leaf of the log, and
// that `stepseal log audit` passes.
func TestLogServeSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	signer, pub := writerKey(t, dir)
	data := filepath.Join(dir, "data")
	args := []string{data, "--allow", pub, "--addr", "127.0.0.1:0", "--origin", "crash.stepseal.test"}

	child, url := startServe(t, args...)
	v, err := tlog.ReadVerifier(filepath.Join(data, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := logserver.NewClient(url, v, nil)
			for i := 0; ; i++ {
				got, err := c.Add(ctx, provenanceDoc(t, signer, fmt.Sprintf("w%d-%d", w, i)))
				if errors.Is(err, reject.ErrUnableToCheck) {
					return // killed
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[got.Entry.Digest] = got.Index
				mu.Unlock()
			}
		}()
	}
	for {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 150 {
			break
		}
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	wg.Wait()

	child, url = startServe(t, args...)
	defer func() {
		child.Process.Signal(syscall.SIGTERM)
		child.Wait()
	}()
	c, _ := logserver.NewClient(url, v, nil)
	for d, i := range acked {
		got, err := c.Get(ctx, d)
		if err != nil || got.Index != i {
			t.Fatalf("acknowledged %s at %d; after restart %d, %v", d, i, got.Index, err)
		}
	}
	cp, err := c.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaves := map[string]int{}
	if err := c.Log().Audit(ctx, cp, 0, func(_ uint64, leaf []byte) error {
		e, _, err := tlogstore.ParseRecord(leaf)
		leaves[e.Digest]++
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for d := range acked {
		if leaves[d] != 1 {
			t.Fatalf("acknowledged %s is %d leaves", d, leaves[d])
		}
	}
	var out bytes.Buffer
	audit := New(nil, []string{"log", "audit", "--server", url, "--log-key", filepath.Join(data, "log.pub"), "--index", filepath.Join(dir, "audit.db"), "-o", "json"})
	audit.SetOut(&out)
	if err := audit.ExecuteContext(ctx); err != nil {
		t.Fatalf("log audit: %v\n%s", err, out.String())
	}
	t.Logf("%d acknowledged before SIGKILL, %d entries after restart; audit: %s", len(acked), cp.Size, strings.Join(strings.Fields(out.String()), " "))
}

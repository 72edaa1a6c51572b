package cmd

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/internal/witnesstest"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestLogWitnessCLI: `log serve --witness-policy` with a real omniwitness
// publishes cosigned checkpoints; the client commands with --witness-key
// (threshold 1) or --witness-policy accept them, and refuse, with
// witness.ErrNotWitnessed, when they require a witness the log does not use.
func TestLogWitnessCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	signer, pub := writerKey(t, dir)
	logDir := filepath.Join(dir, "log")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The witness must know the log's key before the log's first checkpoint.
	if _, err := tlog.WriteKeyFiles(filepath.Join(logDir, "log.key"), filepath.Join(logDir, "log.pub"), "witnessed.stepseal.test"); err != nil {
		t.Fatal(err)
	}
	logPub := filepath.Join(logDir, "log.pub")
	vkey, err := os.ReadFile(logPub)
	if err != nil {
		t.Fatal(err)
	}
	w := witnesstest.Start(t, "witness.stepseal.test", string(vkey))
	policy := filepath.Join(dir, "witnesses.policy")
	if err := os.WriteFile(policy, []byte(w.Policy()), 0o644); err != nil {
		t.Fatal(err)
	}
	wkey := filepath.Join(dir, "witness.pub")
	if err := os.WriteFile(wkey, []byte(w.VKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, url := startServe(t, logDir, "--allow", pub, "--addr", "127.0.0.1:0", "--witness-policy", policy)
	defer srv.Process.Kill()

	doc := filepath.Join(dir, "prov.json")
	docBytes := provenanceDoc(t, signer, "witnessed")
	if err := os.WriteFile(doc, docBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "log", "add", doc, "--server", url, "--log-key", logPub, "--witness-key", wkey, "--witness-threshold", "1")
	out := mustCLI(t, "log", "search", "--subject", store.Digest([]byte("witnessed")), "--server", url, "--log-key", logPub, "--witness-policy", policy, "-o", "json")
	if !strings.Contains(out, store.Digest(docBytes)) {
		t.Fatalf("search: %s", out)
	}
	mustCLI(t, "log", "monitor", "--server", url, "--log-key", logPub, "--state", filepath.Join(dir, "state"), "--witness-key", w.VKey)
	out = mustCLI(t, "log", "verify", "--server", url, "--key", logPub, "--witness-key", wkey, "-o", "json")
	var v logVerdict
	if err := json.Unmarshal([]byte(out), &v); err != nil || !v.OK || v.Size != 1 {
		t.Fatalf("log verify: %v %s", err, out)
	}

	// A witness the log does not use.
	_, other, err := note.GenerateKey(rand.Reader, "other-witness.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"log", "search", "--subject", store.Digest([]byte("witnessed")), "--server", url, "--log-key", logPub, "--witness-key", other},
		{"log", "verify", "--server", url, "--key", logPub, "--witness-key", other},
		{"log", "monitor", "--server", url, "--log-key", logPub, "--state", filepath.Join(dir, "state2"), "--witness-key", other},
		// Both required (the threshold defaults to all of them): one is not enough.
		{"log", "get", store.Digest(docBytes), "--server", url, "--log-key", logPub, "--witness-key", wkey + "," + other},
	} {
		out, err := runCLI(t, args...)
		if !errors.Is(err, witness.ErrNotWitnessed) || !strings.Contains(out+err.Error(), "other-witness.stepseal.test") {
			t.Fatalf("%v: %v, want witness.ErrNotWitnessed naming the expected witness\n%s", args, err, out)
		}
	}

	// Freshness: after 3 s without an append, the log still serves the
	// checkpoint cosigned then; --witness-max-age 2s refuses it
	// (witness.ErrStale), --witness-stale warn accepts it with a warning.
	time.Sleep(3 * time.Second)
	getArgs := []string{"log", "get", store.Digest(docBytes), "--server", url, "--log-key", logPub, "--witness-key", wkey, "--witness-max-age", "2s"}
	if out, err := runCLI(t, getArgs...); !errors.Is(err, witness.ErrStale) || !strings.Contains(out+err.Error(), "witness.stepseal.test (") {
		t.Fatalf("get with --witness-max-age 2s: %v, want witness.ErrStale\n%s", err, out)
	}
	if out := mustCLI(t, append(getArgs, "--witness-stale", "warn")...); !strings.Contains(out, "warning: witness cosignatures of checkpoint") {
		t.Fatalf("--witness-stale warn printed no warning:\n%s", out)
	}
	if _, err := runCLI(t, append(getArgs, "--witness-stale", "ignore")...); err == nil || !strings.Contains(err.Error(), "--witness-stale") {
		t.Fatalf("--witness-stale ignore: %v", err)
	}

	// Gossip without the cosignature (the log's signature alone) is
	// unverifiable for a monitor requiring the witness: reported, not
	// compared, and the command fails.
	cpRaw, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cpRaw, note.VerifierList(mustVerifier(t, logPub)))
	if err != nil {
		t.Fatal(err)
	}
	n.UnverifiedSigs = nil
	bare, err := note.Sign(n)
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := json.Marshal(map[string]any{"kind": "List", "items": []any{map[string]any{"kind": "TaskRun",
		"metadata": map[string]any{"namespace": "team", "name": "build-1", "annotations": map[string]string{"stepseal.dev/log-checkpoint": string(bare)}}}}})
	gossip := filepath.Join(dir, "runs.json")
	if err := os.WriteFile(gossip, runs, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "log", "monitor", "--server", url, "--log-key", logPub, "--state", filepath.Join(dir, "state"), "--witness-key", wkey, "--gossip", gossip)
	if !errors.Is(err, logserver.ErrGossipUnverifiable) || !strings.Contains(out, "gossip from TaskRun team/build-1: UNVERIFIABLE") {
		t.Fatalf("monitor with uncosigned gossip: %v, want logserver.ErrGossipUnverifiable\n%s", err, out)
	}
}

func mustVerifier(t *testing.T, path string) note.Verifier {
	t.Helper()
	v, err := tlog.ReadVerifier(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

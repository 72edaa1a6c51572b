package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestLogMonitorGossip: `log monitor --gossip` passes when the checkpoints
// in the runs' annotations are extended by the log's tree, and fails,
// naming the run, when one of them is a tree the log does not show the
// monitor (a second server with the same key and other entries: a split
// view).
func TestLogMonitorGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	signer, pub := writerKey(t, dir)
	honestDir, splitDir := filepath.Join(dir, "honest"), filepath.Join(dir, "split")
	honest, honestURL := startServe(t, honestDir, "--allow", pub, "--addr", "127.0.0.1:0", "--origin", "gossip.stepseal.test")
	defer honest.Process.Kill()
	// The split view: another directory with the same key.
	if err := os.MkdirAll(splitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"log.key", "log.pub"} {
		b, err := os.ReadFile(filepath.Join(honestDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(splitDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	split, splitURL := startServe(t, splitDir, "--allow", pub, "--addr", "127.0.0.1:0", "--origin", "gossip.stepseal.test")
	defer split.Process.Kill()
	logPub := filepath.Join(honestDir, "log.pub")
	v, err := tlog.ReadVerifier(logPub)
	if err != nil {
		t.Fatal(err)
	}
	add := func(url, name string) []byte {
		t.Helper()
		c, _ := logserver.NewClient(url, v, nil)
		got, err := c.Add(ctx, provenanceDoc(t, signer, name))
		if err != nil {
			t.Fatal(err)
		}
		return got.Checkpoint.Raw
	}
	seen := add(honestURL, "a")
	add(honestURL, "b")
	other := add(splitURL, "x")
	runs := func(cps map[string][]byte) string {
		var items []map[string]any
		for n, cp := range cps {
			items = append(items, map[string]any{"kind": "TaskRun", "metadata": map[string]any{"namespace": "team", "name": n,
				"annotations": map[string]string{logserver.GossipAnnotation: string(cp)}}})
		}
		b, _ := json.Marshal(map[string]any{"kind": "List", "items": items})
		p := filepath.Join(t.TempDir(), "runs.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	state := filepath.Join(dir, "state")
	out := mustCLI(t, "log", "monitor", "--server", honestURL, "--log-key", logPub, "--state", state, "--gossip", runs(map[string][]byte{"build-1": seen}), "-o", "json")
	var res monitorOut
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.OK || len(res.Gossip) != 1 || res.Gossip[0].Size != 1 {
		t.Fatalf("honest gossip: %+v %v\n%s", res, err, out)
	}
	out, err = runCLI(t, "log", "monitor", "--server", honestURL, "--log-key", logPub, "--state", state, "--gossip", runs(map[string][]byte{"build-1": seen, "build-2": other}))
	if !errors.Is(err, tlog.ErrConsistency) || !strings.Contains(out, "TaskRun team/build-2") {
		t.Fatalf("split view: %v\n%s", err, out)
	}
}

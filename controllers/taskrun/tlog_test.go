package taskrun

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	"github.com/stepseal/stepseal/pkg/tlog"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// With backends dir,tlog every entry is appended to the transparency log,
// stepseal.dev/log-index names the provenance's log entry, and a verifier
// holding only the log's public key finds the provenance's digest at that
// index, proven included in a signed checkpoint. Signing again appends
// nothing.
func TestReconcileLogsToTLog(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	dir := t.TempDir()
	f := newFixture(t, map[string]string{
		settings.KeyBackends: "dir,tlog", settings.KeyStoreDir: filepath.Join(dir, "store"), settings.KeyTLogDir: filepath.Join(dir, "tlog"),
	}, tr)
	got, index := f.signLogged(t, tr)

	if fi, err := os.Stat(filepath.Join(dir, "tlog", "log.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated log key: %v, mode %v", err, fi.Mode())
	}
	v, err := tlog.ReadVerifier(filepath.Join(dir, "tlog", "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := tlog.NewClient(filepath.Join(dir, "tlog", "log"), v)
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != uint64(len(buildPushSteps)+1) {
		t.Errorf("log size %d, want %d (links and provenance)", cp.Size, len(buildPushSteps)+1)
	}
	if gossip, err := tlog.ParseCheckpoint([]byte(got.Annotations[annotations.LogCheckpoint]), v); err != nil || gossip.Size <= index {
		t.Fatalf("%s: %v, size %d for index %d", annotations.LogCheckpoint, err, gossip.Size, index)
	}
	record, err := c.Entry(ctx, index, cp) // verifies inclusion
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dirstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	provs, err := ds.List(ctx, store.Filter{Kind: store.KindProvenance, RunID: buildPushRun})
	if err != nil || len(provs) != 1 {
		t.Fatalf("provenance in the dir store: %d, %v", len(provs), err)
	}
	if !strings.Contains(string(record), provs[0].Digest) || !strings.Contains(string(record), `"provenance"`) {
		t.Errorf("log entry %d does not hold provenance %s: %.200s", index, provs[0].Digest, record)
	}

	// Resumed after a crash before the annotation (the finalizer still on
	// it): same bytes, same index, nothing appended.
	got.Finalizers = []string{annotations.FinalizerTaskRun}
	n, again, err := f.kind.attestAndStore(ctx, got, f.Config.Load())
	if err != nil || n != len(buildPushSteps)+1 {
		t.Fatalf("attestAndStore again: %d, %v", n, err)
	}
	if again != got.Annotations[annotations.LogIndex] {
		t.Errorf("log index %s after a retry, want %s", again, got.Annotations[annotations.LogIndex])
	}
	if cp2, err := c.Checkpoint(ctx); err != nil || cp2.Size != cp.Size {
		t.Errorf("log grew on retry: %d -> %d (%v)", cp.Size, cp2.Size, err)
	}
}

// signLogged reconciles tr with the configured backends and returns it
// signed, with the log index it was annotated with.
func (f *fixture) signLogged(t *testing.T, tr *v1.TaskRun) (*v1.TaskRun, uint64) {
	t.Helper()
	f.Signing.OpenBackends = nil // the configured backends
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	got := f.get(tr)
	if got.Annotations[annotations.Signed] != "true" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	index, err := strconv.ParseUint(got.Annotations[annotations.LogIndex], 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", annotations.LogIndex, got.Annotations[annotations.LogIndex], err)
	}
	return got, index
}

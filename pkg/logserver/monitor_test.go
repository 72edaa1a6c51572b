package logserver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestMonitorForkAndRollback: a monitor that kept log A's checkpoint
// refuses a log with the same key and origin but other entries (a fork),
// and an older checkpoint of A (a rollback); it follows A's growth.
func TestMonitorForkAndRollback(t *testing.T) {
	a := newFixture(t, nil)
	b := &fixture{dir: t.TempDir(), key: a.key, signer: a.signer}
	b.start(t, nil)
	for i := range 3 {
		if _, err := a.client.Add(ctx, provenance(t, a.signer, "run", docName(i))); err != nil {
			t.Fatal(err)
		}
		if _, err := b.client.Add(ctx, provenance(t, a.signer, "other", docName(i))); err != nil {
			t.Fatal(err)
		}
	}
	first, err := Monitor(ctx, a.client, nil)
	if err != nil || first.To != 3 {
		t.Fatalf("first round: %+v %v", first, err)
	}
	old := first.Checkpoint.Raw
	if _, err := a.client.Add(ctx, provenance(t, a.signer, "run", docName(3))); err != nil {
		t.Fatal(err)
	}
	c, _ := NewClient(a.http.URL, a.key.Verifier, nil)
	next, err := Monitor(ctx, c, old)
	if err != nil || next.From != 3 || next.To != 4 {
		t.Fatalf("second round: %+v %v", next, err)
	}
	// B: same key and origin, other entries, same size as the kept one.
	c, _ = NewClient(b.http.URL, a.key.Verifier, nil)
	if _, err := Monitor(ctx, c, old); !errors.Is(err, tlog.ErrFork) {
		t.Fatalf("fork of the same size: %v", err)
	}
	if _, err := b.client.Add(ctx, provenance(t, a.signer, "other", docName(9))); err != nil {
		t.Fatal(err)
	}
	c, _ = NewClient(b.http.URL, a.key.Verifier, nil)
	if _, err := Monitor(ctx, c, old); !errors.Is(err, tlog.ErrConsistency) {
		t.Fatalf("fork that grew: %v", err)
	}
	// A's current checkpoint is the floor; its older one is a rollback.
	c, _ = NewClient(a.http.URL, a.key.Verifier, nil)
	if _, err := c.Log().Trust(ctx, next.Checkpoint.Raw); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Log().VerifyCheckpoint(ctx, old); !errors.Is(err, tlog.ErrRollback) {
		t.Fatalf("older checkpoint: %v", err)
	}
}

// TestRewrittenHistory: someone with write access to the log's directory
// (not the key) changes a byte of entry 2 in its entry bundle and the
// hash of leaf 3 in the level-0 tile, and the log grows on top of the
// forged tile. `log verify` (every inclusion, from the files) names entry
// 2 with tlog.ErrInclusion; the monitor holding the checkpoint from before
// refuses the next checkpoint with tlog.ErrConsistency (its tree does not
// extend the old one). Tessera's fsck is not relied on for this: it does
// not fail fast on a bad tile.
func TestRewrittenHistory(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 6 {
		if _, err := f.client.Add(ctx, provenance(t, f.signer, "run", docName(i))); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := Monitor(ctx, f.client, nil)
	if err != nil || kept.To != 6 {
		t.Fatalf("first round: %+v %v", kept, err)
	}
	f.stop()
	logDir := filepath.Join(f.dir, "log")
	edit := func(p string, change func([]byte)) {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		change(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit(filepath.Join(logDir, layout.EntriesPathForLogIndex(2, 6)), func(b []byte) {
		leaves, err := tlog.ParseEntryBundle(b)
		if err != nil || len(leaves) != 6 {
			t.Fatalf("bundle: %d leaves, %v", len(leaves), err)
		}
		off := bundleOffsets(leaves)[2] + 2 + uint32(len(leaves[2])/2) // a byte in the middle of leaf 2
		b[off] ^= 0x01
	})
	edit(filepath.Join(logDir, layout.TilePath(0, 0, layout.PartialTileSize(0, 0, 6))), func(b []byte) {
		copy(b[3*32:], tlog.LeafHash([]byte("forged")))
	})
	// The log grows on the forged tile (a fresh writer process).
	l, err := tlog.Open(ctx, logDir, f.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []byte("appended after the edit")); err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)

	// log verify from the files, with the public key only.
	vc := tlog.NewClient(logDir, f.key.Verifier)
	cp, err := vc.Checkpoint(ctx)
	if err != nil || cp.Size != 7 {
		t.Fatalf("checkpoint after the edit: %v %v", cp, err)
	}
	err = vc.Audit(ctx, cp, 0, func(uint64, []byte) error { return nil })
	if !errors.Is(err, tlog.ErrInclusion) || !strings.Contains(err.Error(), "entry 2 ") {
		t.Fatalf("log verify of the rewritten log: %v, want tlog.ErrInclusion naming entry 2", err)
	}
	// The monitor, over HTTP, at the next checkpoint.
	f.start(t, nil)
	_, err = Monitor(ctx, f.client, kept.Checkpoint.Raw)
	if !errors.Is(err, tlog.ErrConsistency) || !strings.Contains(err.Error(), kept.Checkpoint.String()) {
		t.Fatalf("monitor after the rewrite: %v, want tlog.ErrConsistency naming %s", err, kept.Checkpoint)
	}
}

package logserver

import (
	"errors"
	"testing"

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

package logserver

import (
	"context"
	"fmt"

	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Checked is what one Monitor round verified.
type Checked struct {
	// From and To are the tree sizes before and after the round.
	From, To uint64
	// Checkpoint is the server's checkpoint, now the trusted one.
	Checkpoint tlog.Checkpoint
}

// Monitor is one round of a log monitor: with trusted (a checkpoint kept
// from the last round, or nil the first time) as the floor, it reads the
// server's checkpoint, which must be signed by the log's key and extend
// trusted (tlog.ErrRollback for a smaller tree, tlog.ErrFork for another
// root of the same size, tlog.ErrConsistency for a rewritten log), then
// verifies every entry added since (inclusion, and that it is a store
// record: ErrAnswer otherwise). The caller keeps Checked.Checkpoint.Raw for
// the next round. A monitor alone cannot see a split view (the log showing
// others another tree); comparing checkpoints with others, or witnesses'
// cosignatures, can.
func Monitor(ctx context.Context, c *Client, trusted []byte) (Checked, error) {
	var from uint64
	if trusted != nil {
		t, err := c.log.Trust(ctx, trusted)
		if err != nil {
			return Checked{}, fmt.Errorf("trusted checkpoint: %w", err)
		}
		from = t.Size
	}
	cp, err := c.log.Checkpoint(ctx)
	if err != nil {
		return Checked{From: from}, err
	}
	err = c.log.Audit(ctx, cp, from, func(i uint64, leaf []byte) error {
		if _, _, err := tlogstore.ParseRecord(leaf); err != nil {
			return fmt.Errorf("%w: log entry %d: %w", ErrAnswer, i, err)
		}
		return nil
	})
	if err != nil {
		return Checked{From: from}, err
	}
	return Checked{From: from, To: cp.Size, Checkpoint: cp}, nil
}

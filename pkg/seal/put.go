package seal

import (
	"context"
	"fmt"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/stepseal/stepseal/pkg/store"
)

// Target is one store that receives a run's evidence.
type Target struct {
	// Name names the store in errors (a backend name, a directory).
	Name  string
	Store store.Store
}

// Put stores entries in every target, in order, and returns the log index
// of the last entry in the first target that is a store.IndexedPutter (""
// if none). Within a target every entry but the last is Put concurrently (a
// transparency log then covers them with one checkpoint); the last — a
// run's provenance, which names the others by digest — only after all of
// them are stored, so a crash never leaves a provenance whose links are
// missing (a retry would re-sign the missing link with new bytes, and then
// the provenance, storing a second one). It fails if any Put fails; Puts
// are idempotent, so a retry is safe.
func Put(ctx context.Context, targets []Target, entries []store.Entry) (string, error) {
	logIndex := ""
	if len(entries) == 0 {
		return "", nil
	}
	for _, t := range targets {
		if t.Store == nil {
			continue
		}
		indexed, _ := t.Store.(store.IndexedPutter)
		put := func(ctx context.Context, e store.Entry) (uint64, error) {
			var i uint64
			var err error
			if indexed != nil {
				_, i, err = indexed.PutIndexed(ctx, e)
			} else {
				_, err = t.Store.Put(ctx, e)
			}
			if err != nil {
				return 0, fmt.Errorf("backend %s: storing %s %s: %w", t.Name, e.Kind, e.Name, err)
			}
			return i, nil
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(64)
		for _, e := range entries[:len(entries)-1] {
			g.Go(func() error { _, err := put(gctx, e); return err })
		}
		if err := g.Wait(); err != nil {
			return "", err
		}
		last, err := put(ctx, entries[len(entries)-1])
		if err != nil {
			return "", err
		}
		if indexed != nil && logIndex == "" {
			logIndex = strconv.FormatUint(last, 10)
		}
	}
	return logIndex, nil
}

// LogCheckpoint returns the signed checkpoint of the log Put took its index
// from (the first target that is a store.IndexedPutter), when that store is
// a store.Checkpointer; nil when there is none.
func LogCheckpoint(ctx context.Context, targets []Target) ([]byte, error) {
	for _, t := range targets {
		if _, ok := t.Store.(store.IndexedPutter); !ok {
			continue
		}
		c, ok := t.Store.(store.Checkpointer)
		if !ok {
			return nil, nil
		}
		cp, err := c.LogCheckpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("backend %s: checkpoint: %w", t.Name, err)
		}
		return cp, nil
	}
	return nil, nil
}

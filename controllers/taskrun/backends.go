package taskrun

import (
	"context"
	"fmt"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/pkg/store"
)

// PutAll puts entries into every backend that stores and returns the log
// index of the last entry in the first logging backend (a
// store.IndexedPutter; "" if none). Within
// a backend every entry but the last is Put concurrently (a transparency
// log then covers them with one checkpoint); the last — a run's provenance,
// which names the others by digest — only after all of them are stored, so
// a crash never leaves a provenance whose links are missing (a retry would
// re-sign the missing link with new bytes, and then the provenance, storing
// a second one). It fails if any Put fails; Puts are idempotent, so a retry
// is safe.
func PutAll(ctx context.Context, backends []lifecycle.Backend, entries []store.Entry) (string, error) {
	logIndex := ""
	for _, b := range backends {
		if b.Store == nil || len(entries) == 0 {
			continue
		}
		indexed, _ := b.Store.(store.IndexedPutter)
		put := func(ctx context.Context, e store.Entry) (uint64, error) {
			var i uint64
			var err error
			if indexed != nil {
				_, i, err = indexed.PutIndexed(ctx, e)
			} else {
				_, err = b.Store.Put(ctx, e)
			}
			if err != nil {
				return 0, fmt.Errorf("backend %s: storing %s %s: %w", b.Name, e.Kind, e.Name, err)
			}
			return i, nil
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
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

package taskrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// AnnotationLogIndex is the transparency-log index of a run's provenance
// (of its last entry when it has no provenance), set with signed=true when
// a "tlog" backend is configured.
const AnnotationLogIndex = "stepseal.dev/log-index"

// IndexedStore is a store that appends to a transparency log and reports
// where (pkg/store/tlogstore).
type IndexedStore interface {
	PutIndexed(ctx context.Context, e store.Entry) (digest string, index uint64, err error)
}

// PutAll puts entries into every backend that stores and returns the log
// index of the last entry in the first logging backend ("" if none). Within
// a backend every entry but the last is Put concurrently (a transparency
// log then covers them with one checkpoint); the last — a run's provenance,
// which names the others by digest — only after all of them are stored, so
// a crash never leaves a provenance whose links are missing (a retry would
// re-sign the missing link with new bytes, and then the provenance, storing
// a second one). It fails if any Put fails; Puts are idempotent, so a retry
// is safe.
func PutAll(ctx context.Context, backends []Backend, entries []store.Entry) (string, error) {
	logIndex := ""
	for _, b := range backends {
		if b.Store == nil || len(entries) == 0 {
			continue
		}
		indexed, _ := b.Store.(IndexedStore)
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

// openStores holds a process's open stores by directory (in Shared, for
// the TaskRun and PipelineRun controllers alike): a tlog directory can be
// opened once per process (tlogstore locks it), and one DirStore per path
// serialises its writers.
type openStores struct {
	sync.Mutex
	dirs map[string]*store.DirStore
	logs map[string]*tlogstore.Store
}

// dir opens (once per Shared) the dir store at path.
func (o *openStores) dir(path string) (*store.DirStore, error) {
	o.Lock()
	defer o.Unlock()
	if s, ok := o.dirs[path]; ok {
		return s, nil
	}
	s, err := store.NewDirStore(path)
	if err != nil {
		return nil, err
	}
	if o.dirs == nil {
		o.dirs = map[string]*store.DirStore{}
	}
	o.dirs[path] = s
	return s, nil
}

// log opens (once per Shared) the tlog backend of cfg. Its checkpoint
// key is cfg.TLogKey, or DIR/log.key, generated on first use (0600, its
// public half in DIR/log.pub for verifiers).
func (o *openStores) log(ctx context.Context, cfg *settings.Config) (*tlogstore.Store, error) {
	o.Lock()
	defer o.Unlock()
	if s, ok := o.logs[cfg.TLogDir]; ok {
		return s, nil
	}
	keyFile := cfg.TLogKey
	if keyFile == "" {
		keyFile = filepath.Join(cfg.TLogDir, "log.key")
		if _, err := os.Stat(keyFile); os.IsNotExist(err) {
			if err := os.MkdirAll(cfg.TLogDir, 0o755); err != nil {
				return nil, err
			}
			if _, err := tlog.WriteKeyFiles(keyFile, filepath.Join(cfg.TLogDir, "log.pub"), cfg.TLogOrigin); err != nil {
				return nil, err
			}
		}
	}
	key, err := tlog.ReadKey(keyFile)
	if err != nil {
		return nil, err
	}
	// The store outlives the reconcile that opened it: not ctx's deadline.
	s, err := tlogstore.Open(context.WithoutCancel(ctx), cfg.TLogDir, key, nil)
	if err != nil {
		return nil, err
	}
	if o.logs == nil {
		o.logs = map[string]*tlogstore.Store{}
	}
	o.logs[cfg.TLogDir] = s
	return s, nil
}

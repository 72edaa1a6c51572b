package tlogstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Audited is one entry an Audit checked.
type Audited struct {
	// Index is the entry's position in the log.
	Index uint64
	// Entry is the entry with all its subjects; Data is nil (documents are
	// hashed as they are read, not kept).
	Entry store.Entry
	// Blobs is how many blobs beside the log (document, subject list) were
	// checked for it: 0 when the record holds everything.
	Blobs int
}

// LogDir returns the log directory of dir and whether dir is a store
// directory (a log in DIR/log, blobs in DIR/blobs) rather than a bare log.
func LogDir(dir string) (logDir string, isStore bool) {
	if _, err := os.Stat(filepath.Join(dir, "checkpoint")); err == nil {
		return dir, false
	}
	if _, err := os.Stat(filepath.Join(dir, "log", "checkpoint")); err == nil {
		return filepath.Join(dir, "log"), true
	}
	return dir, false
}

// Audit checks a store directory with the log's public key alone (c is a
// tlog.Client of DIR/log, cp a checkpoint it verified): every entry of cp's
// tree is included in it, is a store record (v2, or v1 of older stores),
// and every blob it binds in DIR/blobs is there and matches it. It calls fn
// for each entry in log order, and stops at the first failure: a tlog error
// naming the entry, store.ErrCorrupt for a record that does not parse, or
// ErrBlobMissing / ErrBlobMismatch naming the entry and the blob.
//
// It reads one entry's subjects at a time and streams documents, so its
// memory does not grow with the store.
func Audit(ctx context.Context, dir string, c *tlog.Client, cp tlog.Checkpoint, fn func(Audited) error) error {
	blobs := blobDir(filepath.Join(dir, "blobs"))
	return c.Audit(ctx, cp, 0, func(i uint64, raw []byte) error {
		r, err := parseRecord(raw)
		if err != nil {
			return fmt.Errorf("%w: log entry %d: %w", store.ErrCorrupt, i, err)
		}
		a := Audited{Index: i}
		subs, err := blobs.subjects(i, r)
		if err != nil {
			return err
		}
		if !r.inlineSubjects() {
			a.Blobs++
		}
		if err := blobs.checkData(i, r); err != nil {
			return err
		}
		if r.Data == nil {
			a.Blobs++
		}
		a.Entry = r.entry(subs)
		a.Entry.Data = nil
		return fn(a)
	})
}

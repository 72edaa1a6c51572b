package pgstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
)

// ErrUnaccounted: the store's log holds an entry that no row accounts for
// (not a row's record, not another record of a row's document, not an
// earlier attempt at a stored run's document): a row deleted from the
// database, or a document logged that the store never kept. Audit returns
// it (reject.ErrMismatch) naming each such log entry.
var ErrUnaccounted = reject.Sentinel(reject.ErrMismatch, "log entry no row of the store accounts for")

// EntryClass says how a log entry relates to the store's rows.
type EntryClass string

const (
	// ClassRow: a row names this log entry.
	ClassRow EntryClass = "row"
	// ClassAlias: another record of a stored document (the same digest;
	// the row names another log entry): an earlier subject set that a
	// later Put extended, or the same document logged twice.
	ClassAlias EntryClass = "alias"
	// ClassSuperseded: a document no row holds, of the same kind, run and
	// name (as the log records them) as one a row holds: an attempt killed
	// between its log append and its row's commit, which the controller
	// then signed again (a new signature, a new document) and stored.
	ClassSuperseded EntryClass = "superseded"
	// ClassIntent: the document of a row still written as an intent on a
	// served log (a writer stopped between its append and the row's
	// completion; the next List by a writing store completes it).
	ClassIntent EntryClass = "intent"
	// ClassUnaccounted: none of the above (ErrUnaccounted).
	ClassUnaccounted EntryClass = "unaccounted"
)

// AuditEntry is one log entry that is not a row's record.
type AuditEntry struct {
	Index uint64
	Class EntryClass
	// The entry as the log records it.
	Digest, Kind, Name, RunID string
	// Of is, for an alias, the log entry the document's row names; for a
	// superseded attempt, the log entry of the stored document it was
	// superseded by.
	Of uint64
}

func (e AuditEntry) String() string {
	s := fmt.Sprintf("log entry %d: %s %s %q of run %q (%s)", e.Index, e.Class, e.Kind, e.Name, e.RunID, e.Digest)
	switch e.Class {
	case ClassAlias:
		s += fmt.Sprintf(", the row names log entry %d", e.Of)
	case ClassSuperseded:
		s += fmt.Sprintf(", superseded by log entry %d", e.Of)
	}
	return s
}

// AuditReport is what Audit found.
type AuditReport struct {
	// Size is the size of the checkpoint audited (every entry below it
	// verified against it); Rows the rows, every one verified against its
	// log entry.
	Size uint64
	Rows int
	// Others are the log entries that are not a row's record, in log
	// order.
	Others []AuditEntry
}

// Count is how many of Others are of class c.
func (r AuditReport) Count(c EntryClass) int {
	n := 0
	for _, e := range r.Others {
		if e.Class == c {
			n++
		}
	}
	return n
}

// Audit compares the whole log with the whole database: every row is read
// and verified against its log entry (as List does: a mismatch is
// store.ErrCorrupt; a writing store on a served log completes intents on
// the way), then every log entry up to the current checkpoint is read and
// verified against it and classed: a row's record, an alias of a stored
// document, a superseded attempt (an entry left by a writer killed
// between its log append and its row's commit, whose run was stored with
// another document since), an intent's document (served log), or
// unaccounted for. Entries of the first three
// kinds are what the store's writes leave in the log; any unaccounted
// entry makes Audit return the report with ErrUnaccounted naming each.
// Rows written while Audit runs may name entries beyond the checkpoint it
// read; those rows are not counted. It reads everything: an operator's
// command, not a request path.
func (s *Store) Audit(ctx context.Context) (AuditReport, error) {
	if _, err := s.List(ctx, store.Filter{}); err != nil {
		return AuditReport{}, err
	}
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return AuditReport{}, fmt.Errorf("%w: pgstore: audit: %w", logErr(err), err)
	}
	rowAt := map[uint64]string{} // log index -> row digest
	rowOf := map[string]uint64{} // row digest -> log index
	intent := map[string]bool{}  // digests of intents (served log)
	rows, err := s.pool.Query(ctx, `SELECT digest, log_index FROM stepseal_entries WHERE log_index IS NULL OR log_index < $1`, int64(cp.Size))
	if err != nil {
		return AuditReport{}, s.dbErr(ctx, "audit", err)
	}
	for rows.Next() {
		var (
			d []byte
			i *int64
		)
		if err := rows.Scan(&d, &i); err != nil {
			rows.Close()
			return AuditReport{}, s.dbErr(ctx, "audit", err)
		}
		if i == nil {
			intent[hexDigest(d)] = true
			continue
		}
		rowAt[uint64(*i)] = hexDigest(d)
		rowOf[hexDigest(d)] = uint64(*i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return AuditReport{}, s.dbErr(ctx, "audit", err)
	}

	rep := AuditReport{Size: cp.Size, Rows: len(rowOf)}
	stored := map[string]uint64{} // kind, run, name of a row's record -> its log index
	err = s.log.Client().Audit(ctx, cp, 0, func(i uint64, data []byte) error {
		e, _, err := tlogstore.ParseRecord(data)
		if err != nil {
			return fmt.Errorf("%w: pgstore: audit: log entry %d: %w", store.ErrCorrupt, i, err)
		}
		if d, ok := rowAt[i]; ok {
			if d != e.Digest {
				return fmt.Errorf("%w: %w: a row of %s names log entry %d, which holds %s", store.ErrCorrupt, ErrRowMismatch, d, i, e.Digest)
			}
			stored[key(e)] = i
			return nil
		}
		a := AuditEntry{Index: i, Digest: e.Digest, Kind: e.Kind, Name: e.Name, RunID: e.RunID}
		if at, ok := rowOf[e.Digest]; ok {
			a.Class, a.Of = ClassAlias, at
		} else if intent[e.Digest] {
			a.Class = ClassIntent
		}
		rep.Others = append(rep.Others, a)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return AuditReport{}, ctx.Err()
		}
		if reject.Of(err) == nil {
			err = fmt.Errorf("%w: pgstore: audit: %w", logErr(err), err)
		}
		return rep, err
	}
	var bad []string
	for k := range rep.Others {
		a := &rep.Others[k]
		if a.Class != "" {
			continue
		}
		if at, ok := stored[key(store.Entry{Kind: a.Kind, RunID: a.RunID, Name: a.Name})]; ok && a.RunID != "" {
			a.Class, a.Of = ClassSuperseded, at
			continue
		}
		a.Class = ClassUnaccounted
		bad = append(bad, a.String())
	}
	if len(bad) > 0 {
		return rep, fmt.Errorf("%w: %d of %d: %s", ErrUnaccounted, len(bad), cp.Size, strings.Join(bad, "; "))
	}
	return rep, nil
}

// key identifies what a log record is of: its kind, run and name.
func key(e store.Entry) string { return e.Kind + "\x00" + e.RunID + "\x00" + e.Name }

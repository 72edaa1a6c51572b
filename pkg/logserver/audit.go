package logserver

import (
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/stepseal/stepseal/pkg/tlog"
)

// AuditReport is what Audit checked.
type AuditReport struct {
	// Checkpoint is the tree the audit rebuilt the index of.
	Checkpoint tlog.Checkpoint
	// Entries is how many log entries were verified and indexed (this run
	// and earlier runs on the same index file).
	Entries uint64
	// Aliases are later leaves of a document already in the log, by log
	// index: the server answers with the first one.
	Aliases map[uint64]string
	// Queries and Results count the searches compared and their results.
	Queries, Results int
}

// Audit proves a server's search answers complete. It rebuilds the index
// from the log alone, in the bbolt file at indexPath (reused: a later audit
// only reads the entries added since), verifying every entry's inclusion in
// the server's current checkpoint; then it runs each query against the
// server and compares: a result the server left out is ErrIncomplete
// naming the query, the log index and the digest. With no queries it asks
// for every subject in the log and every kind. Answers are verified as
// Client verifies them.
func Audit(ctx context.Context, c *Client, indexPath string, queries []Query) (AuditReport, error) {
	rebuilt, err := OpenIndex(indexPath)
	if err != nil {
		return AuditReport{}, err
	}
	defer rebuilt.Close()
	cp, err := c.log.Checkpoint(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	rep := AuditReport{Checkpoint: cp}
	w, err := rebuilt.Watermark()
	if err != nil {
		return rep, err
	}
	if w > cp.Size {
		return rep, fmt.Errorf("%w: the audit index at %s covers %d entries, the server's checkpoint %s fewer (another log, or a rollback)", tlog.ErrRollback, indexPath, w, cp)
	}
	var rows []Row
	flush := func(next uint64) error {
		_, err := rebuilt.Apply(rows, next)
		rows = rows[:0]
		return err
	}
	err = c.log.Audit(ctx, cp, w, func(i uint64, leaf []byte) error {
		rows = append(rows, rowOf(i, leaf))
		if len(rows) == 256 {
			return flush(i + 1)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	if err := flush(cp.Size); err != nil {
		return rep, err
	}
	rep.Entries = cp.Size
	if rep.Aliases, err = rebuilt.Aliases(); err != nil {
		return rep, err
	}
	if len(queries) == 0 {
		if queries, err = rebuilt.allQueries(); err != nil {
			return rep, err
		}
	}
	for _, q := range queries {
		n, err := compare(ctx, c, rebuilt, q, cp)
		rep.Queries++
		rep.Results += n
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// compare checks the server's answers to q against the rebuilt index, up
// to cp's size.
func compare(ctx context.Context, c *Client, rebuilt *Index, q Query, cp tlog.Checkpoint) (int, error) {
	got := map[uint64]string{}
	if _, err := c.SearchAll(ctx, q, 0, MaxLimit, func(r VerifiedResult) error {
		if r.Index < cp.Size {
			got[r.Index] = r.Entry.Digest
		}
		return nil
	}); err != nil {
		return 0, err
	}
	var missing []string
	n := 0
	for from := uint64(0); ; {
		rows, more, err := rebuilt.Search(q, from, cp.Size, MaxLimit)
		if err != nil {
			return n, err
		}
		for _, r := range rows {
			n++
			if _, ok := got[r.Index]; !ok {
				missing = append(missing, fmt.Sprintf("log entry %d (%s %s)", r.Index, r.Kind, r.Digest))
			}
			from = r.Index + 1
		}
		if !more {
			break
		}
	}
	if len(missing) > 0 {
		shown := missing
		if len(shown) > 5 {
			shown = shown[:5]
		}
		return n, fmt.Errorf("%w: search for %s in %s left out %d of %d entries: %s", ErrIncomplete, q, cp, len(missing), n, strings.Join(shown, ", "))
	}
	return n, nil
}

// allQueries is one query per distinct subject and per kind in the index.
func (x *Index) allQueries() ([]Query, error) {
	var out []Query
	err := x.db.View(func(tx *bolt.Tx) error {
		var last []byte
		c := tx.Bucket(bucketSubject).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 40 || (last != nil && string(k[:32]) == string(last)) {
				continue
			}
			last = append(last[:0], k[:32]...)
			out = append(out, Query{Subject: fmt.Sprintf("sha256:%x", k[:32])})
		}
		kinds := map[string]bool{}
		c = tx.Bucket(bucketKind).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) > 9 {
				kinds[string(k[:len(k)-9])] = true
			}
		}
		for k := range kinds {
			out = append(out, Query{Kind: k})
		}
		return nil
	})
	return out, err
}

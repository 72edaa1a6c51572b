package pgstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
)

// ErrNotDerived: a Put of a store on a served log declared what the log
// does not derive from the document (another kind, a subject the document
// does not name, another run or step): the row would not match its log
// entry, so nothing is stored.
var ErrNotDerived = reject.Sentinel(reject.ErrMismatch, "entry is not what the served log derives from its document")

// OpenServed connects to the database dsn names like Open, and returns a
// Store whose tamper evidence is the log served at c (`stepseal log
// serve`), shared by every replica over HTTP: Put appends the document to
// the served log (idempotent on its digest; the server derives kind, run
// and subjects from the signed document itself and must allow its signer),
// and the row keeps the index of the document's log entry; every read
// re-verifies that entry's inclusion in the log's signed checkpoint (read
// with c's public key, and c's witness policy if it has one) and the row
// against the entry. With opts.ReadOnly nothing is appended.
func OpenServed(ctx context.Context, dsn string, c *logserver.Client, opts *Options) (*Store, error) {
	if c == nil {
		return nil, errors.New("pgstore: OpenServed needs a log server client")
	}
	s, err := Open(ctx, dsn, ReadOnly(c.Log()), opts)
	if err != nil {
		return nil, err
	}
	s.served = c
	return s, nil
}

// putServed stores e on a served log, in three steps that each survive a
// crash of the writer: (1) under the digest's advisory lock, the row is
// read, and written as an intent (no log index) when there is none; (2)
// the document is appended to the served log and the answer verified and
// checked against e; (3) the row gets the log index and the log's subjects.
// A writer killed after (1) leaves an intent that reads complete (settle),
// so the bytes are reused, not signed again and logged twice.
func (s *Store) putServed(ctx context.Context, e store.Entry) (string, uint64, error) {
	if s.readOnly {
		return "", 0, fmt.Errorf("pgstore: put %s %q: the store was opened read-only", e.Kind, e.Name)
	}
	raw := rawDigest(e.Digest)
	var (
		index *int64
		have  [][]byte
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(raw)); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT log_index, ARRAY(SELECT subject FROM stepseal_subjects WHERE digest = $1 ORDER BY subject) FROM stepseal_entries WHERE digest = $1`, raw).Scan(&index, &have)
		if err != pgx.ErrNoRows {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO stepseal_entries (digest, kind, name, run_id, data, log_index) VALUES ($1, $2, $3, $4, $5, NULL)`,
			raw, e.Kind, e.Name, e.RunID, e.Data)
		return err
	})
	if err != nil {
		return "", 0, s.dbErr(ctx, "put "+e.Digest, err)
	}
	if index != nil && covers(have, e.Subjects) {
		return e.Digest, uint64(*index), nil
	}
	v, err := s.appendServed(ctx, e)
	if errors.Is(err, reject.ErrRefused) && index == nil {
		// Nothing was stored: remove the intent, if it still is one.
		if _, derr := s.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM stepseal_entries WHERE digest = $1 AND log_index IS NULL`, raw); derr != nil {
			return "", 0, errors.Join(err, s.dbErr(ctx, "removing the intent of "+e.Digest, derr))
		}
	}
	if err != nil {
		return "", 0, err
	}
	if err := s.complete(ctx, e, v); err != nil {
		return "", 0, err
	}
	return e.Digest, v.Index, nil
}

// lockKey is the advisory lock key of a digest, as PutIndexed takes it.
func lockKey(raw []byte) int64 { return int64(binary.BigEndian.Uint64(raw)) }

// covers reports whether have (raw digests) holds every subject.
func covers(have [][]byte, subjects []string) bool {
	for _, sub := range subjects {
		if !slices.ContainsFunc(have, func(h []byte) bool { return bytes.Equal(h, rawDigest(sub)) }) {
			return false
		}
	}
	return true
}

// appendServed posts e's document to the served log and checks that the
// log derived e from it (checkDerived). A log that cannot be reached or
// pushed back is store.ErrUnavailable; a refusal (the document's signer is
// not allowed, an answer whose proof fails) keeps its reason.
func (s *Store) appendServed(ctx context.Context, e store.Entry) (logserver.Verified, error) {
	v, err := s.served.Add(ctx, e.Data)
	if err != nil {
		if ctx.Err() != nil {
			return logserver.Verified{}, ctx.Err()
		}
		if errors.Is(err, reject.ErrUnableToCheck) || reject.Of(err) == nil {
			return logserver.Verified{}, fmt.Errorf("%w: pgstore: put %s %q (%s): served log: %w", store.ErrUnavailable, e.Kind, e.Name, e.Digest, err)
		}
		return logserver.Verified{}, fmt.Errorf("pgstore: put %s %q (%s): served log: %w", e.Kind, e.Name, e.Digest, err)
	}
	if err := checkDerived(e, v.Entry); err != nil {
		return logserver.Verified{}, fmt.Errorf("%w: %s %q (%s, log entry %d): %w", ErrNotDerived, e.Kind, e.Name, e.Digest, v.Index, err)
	}
	return v, nil
}

// checkDerived compares what a writer declares of a document with what the
// served log derived from it: the same kind; a run the log found, if it
// found one; a link's step and key (its name, or an attempt's name); no
// subject the document does not name. A provenance's or an attestation's
// name, and the run of a document that names none, are the writer's labels.
func checkDerived(e, logged store.Entry) error {
	var bad []string
	if e.Kind != logged.Kind {
		bad = append(bad, fmt.Sprintf("kind %q (log: %q)", e.Kind, logged.Kind))
	}
	if logged.RunID != "" && e.RunID != "" && e.RunID != logged.RunID {
		bad = append(bad, fmt.Sprintf("run %q (log: %q)", e.RunID, logged.RunID))
	}
	if e.Kind == logged.Kind && !nameAgrees(e.Kind, e.Name, logged.Name) {
		bad = append(bad, fmt.Sprintf("name %q (log: %q)", e.Name, logged.Name))
	}
	for _, sub := range e.Subjects {
		if !slices.Contains(logged.Subjects, sub) {
			bad = append(bad, "subject "+sub+" (the document does not name it)")
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}

// nameAgrees reports whether a row's name fits the name the served log
// derived: a link's must be the log's (<step>.<keyid[:8]>.link) or an
// attempt link name of the same step and key; a layout's the log's; any
// other kind's name is the writer's label.
func nameAgrees(kind, name, logged string) bool {
	switch kind {
	case store.KindLink:
		if name == logged {
			return true
		}
		step, key, _, ok := seal.ParseAttemptLinkName(name)
		lstep, lkey, lok := seal.ParseLinkName(logged)
		return ok && lok && step == lstep && key == lkey
	case store.KindLayout:
		return name == logged
	}
	return true
}

// complete writes step (3) of putServed: an intent gets v's log index and
// e's kind, name and run (the run the log derived when e has none); a row
// some writer completed meanwhile must name the same log entry. Either way
// the row gets every subject the log derived.
func (s *Store) complete(ctx context.Context, e store.Entry, v logserver.Verified) error {
	raw := rawDigest(e.Digest)
	run := cmpOr(e.RunID, v.Entry.RunID)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(raw)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE stepseal_entries SET log_index = $2, kind = $3, name = $4, run_id = $5 WHERE digest = $1 AND log_index IS NULL`,
			raw, int64(v.Index), e.Kind, e.Name, run)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			var old *int64
			err := tx.QueryRow(ctx, `SELECT log_index FROM stepseal_entries WHERE digest = $1`, raw).Scan(&old)
			switch {
			case err == pgx.ErrNoRows:
				// The intent was removed meanwhile (a reader found the
				// log refusing another writer's claim of these bytes).
				if _, err := tx.Exec(ctx, `INSERT INTO stepseal_entries (digest, kind, name, run_id, data, log_index) VALUES ($1, $2, $3, $4, $5, $6)`,
					raw, e.Kind, e.Name, run, e.Data, int64(v.Index)); err != nil {
					return err
				}
			case err != nil:
				return err
			case old == nil || *old != int64(v.Index):
				return fmt.Errorf("%w: %w: %s %q (%s): the row names log entry %v, the served log holds the document at %d",
					store.ErrCorrupt, ErrRowMismatch, e.Kind, e.Name, e.Digest, fmtIndex(old), v.Index)
			}
		}
		if len(v.Entry.Subjects) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO stepseal_subjects (subject, digest) SELECT unnest($1::bytea[]), $2 ON CONFLICT DO NOTHING`,
				rawDigests(v.Entry.Subjects), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrCorrupt) {
		return err
	}
	if err != nil {
		return s.dbErr(ctx, fmt.Sprintf("put %s (log entry %d)", e.Digest, v.Index), err)
	}
	return nil
}

func fmtIndex(i *int64) string {
	if i == nil {
		return "none"
	}
	return fmt.Sprint(*i)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// settle returns rows with their intents resolved: on a store that
// appends, each intent's document is appended to the served log (again:
// appends are idempotent) and the row completed, or, when the log refuses
// the document, the intent is removed (nothing was stored); a read-only
// store leaves intents out. Rows of a store on a local log pass unchanged
// (an intent there is corruption, which verify reports).
func (s *Store) settle(ctx context.Context, rows []row) ([]row, error) {
	if s.served == nil || !slices.ContainsFunc(rows, func(r row) bool { return r.pending }) {
		return rows, nil
	}
	out := rows[:0:0]
	for _, r := range rows {
		if !r.pending {
			out = append(out, r)
			continue
		}
		if s.readOnly {
			continue
		}
		e := store.Entry{Kind: r.kind, Name: r.name, RunID: r.runID, Data: r.data, Digest: r.digest}
		v, err := s.appendServed(ctx, e)
		if errors.Is(err, reject.ErrRefused) {
			// The log will never hold this document as the row says:
			// drop the intent, if it still is one.
			if _, derr := s.pool.Exec(ctx, `DELETE FROM stepseal_entries WHERE digest = $1 AND log_index IS NULL`, rawDigest(r.digest)); derr != nil {
				return nil, s.dbErr(ctx, "dropping the refused intent "+r.digest, derr)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := s.complete(ctx, e, v); err != nil {
			return nil, err
		}
		r.pending, r.index, r.subjects = false, int64(v.Index), v.Entry.Subjects
		if r.runID == "" {
			r.runID = v.Entry.RunID
		}
		out = append(out, r)
	}
	return out, nil
}

// verifyServed checks r against raw, the served log's entry i it names
// (read and verified by rowEntry): the entry holds exactly the row's
// document, and the row's kind, subjects, run and name are what the log
// derived from it (checkDerived; the subjects exactly the log's).
func verifyServed(r row, i uint64, raw []byte) (store.Entry, error) {
	logged, complete, err := tlogstore.ParseRecord(raw)
	if err != nil || !complete {
		if err == nil {
			err = errors.New("the record does not list its subjects")
		}
		return store.Entry{}, fmt.Errorf("%w: %w: %s (log entry %d): %w", store.ErrCorrupt, ErrRowMismatch, r.digest, i, err)
	}
	e := store.Entry{Kind: r.kind, Name: r.name, RunID: r.runID, Subjects: r.subjects, Data: r.data, Digest: r.digest}
	var bad []string
	if logged.Digest != r.digest {
		bad = append(bad, "log entry holds "+logged.Digest)
	} else if !bytes.Equal(logged.Data, r.data) {
		bad = append(bad, "data")
	}
	if err := checkDerived(e, logged); err != nil {
		bad = append(bad, err.Error())
	}
	if logged.RunID != "" && r.runID == "" {
		bad = append(bad, fmt.Sprintf("run \"\" (log: %q)", logged.RunID))
	}
	if !slices.Equal(r.subjects, slices.Sorted(slices.Values(logged.Subjects))) {
		bad = append(bad, fmt.Sprintf("subjects (%d in the database, %d in the log)", len(r.subjects), len(logged.Subjects)))
	}
	if len(bad) > 0 {
		return store.Entry{}, fmt.Errorf("%w: %w: %s %q (%s, log entry %d): %s", store.ErrCorrupt, ErrRowMismatch, r.kind, r.name, r.digest, i, strings.Join(bad, ", "))
	}
	return e, nil
}

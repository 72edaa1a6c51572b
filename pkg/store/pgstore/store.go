package pgstore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// ErrRowMismatch: a row does not match the log entry it names (its data,
// kind, name, run or subjects were changed, or it names another entry).
// Reads return it under store.ErrCorrupt (reject.ErrMismatch).
var ErrRowMismatch = reject.Sentinel(reject.ErrMismatch, "row does not match its log entry")

// Log is the transparency log a Store appends to and verifies against.
// *tlog.Log is one (a log in a directory that every replica reaches); a
// served log's client can be another.
type Log interface {
	// Append adds data and returns its index once a signed checkpoint
	// covering it is published.
	Append(ctx context.Context, data []byte) (uint64, error)
	// Checkpoint is the log's current checkpoint, verified.
	Checkpoint(ctx context.Context) (tlog.Checkpoint, error)
	// Client reads and verifies entries.
	Client() *tlog.Client
}

var _ Log = (*tlog.Log)(nil)

// Options tune a Store. The zero value is usable.
type Options struct {
	// MaxConns bounds the connection pool (default 32, or the DSN's
	// pool_max_conns). Connecting times out after the DSN's
	// connect_timeout, 10 s when it has none. A Put holds a connection while its record is
	// appended to the log (about one checkpoint interval), so writers
	// beyond MaxConns wait.
	MaxConns int32
	// PageSize is how many rows a read fetches and verifies at a time
	// (default 256).
	PageSize int
	// ReadOnly opens a store on a served log (OpenServed) for reading
	// only: Put is refused, and rows whose document is not yet in the log
	// (a writer's intent) are left out of reads instead of completed.
	ReadOnly bool
}

// Store keeps entries in PostgreSQL, each bound to a record in a
// transparency log. It is safe for concurrent use, and any number of Stores
// (processes, replicas) may share one database and one log.
//
// Put, in one transaction: takes an advisory lock on the digest (so
// writers of one document, in any replica, take turns), reads the row; if
// it already lists every subject it returns the row's log index; otherwise
// it appends a record of the entry with the union of the subjects to the
// log, then writes the row and the subject rows and commits. A failure
// before the commit leaves no row: at worst a log record that no row names,
// which a retried Put supersedes.
type Store struct {
	pool     *pgxpool.Pool
	log      Log
	pageSize int
	secret   string // the DSN's password, kept out of error messages
	// served is the served log's client when the store's tamper evidence
	// is a served log (OpenServed); readOnly when it may not append.
	served   *logserver.Client
	readOnly bool
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.IndexedPutter = (*Store)(nil)
	_ store.Pager         = (*Store)(nil)
	_ store.Closer        = (*Store)(nil)
	_ store.Checkpointer  = (*Store)(nil)
)

// LogCheckpoint implements store.Checkpointer: the log's current
// checkpoint, verified.
func (s *Store) LogCheckpoint(ctx context.Context) ([]byte, error) {
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return cp.Raw, nil
}

// Open connects to the database dsn names (a libpq keyword/value string or
// a postgres:// URL), migrates its schema and returns a Store that appends
// to and verifies against l. Errors never contain the DSN's password.
func Open(ctx context.Context, dsn string, l Log, opts *Options) (*Store, error) {
	if l == nil {
		return nil, errors.New("pgstore: Open needs a log")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password as best it can; say nothing of the
		// string at all.
		return nil, fmt.Errorf("%w: pgstore: the connection string does not parse (not shown: it may hold a password)", store.ErrInvalid)
	}
	s := &Store{log: l, pageSize: o.PageSize, secret: cfg.ConnConfig.Password, readOnly: o.ReadOnly}
	if s.pageSize <= 0 {
		s.pageSize = 256
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// libpq waits forever by default; a database that is not answering
		// is ErrUnavailable, and the caller retries.
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	switch {
	case o.MaxConns > 0:
		cfg.MaxConns = o.MaxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = 32
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, s.dbErr(ctx, "connect", err)
	}
	s.pool = pool
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, _, err := migrate(ctx, tx)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, s.dbErr(ctx, "schema migration", err)
	}
	return s, nil
}

// Close closes the connection pool. The log is the caller's to close.
func (s *Store) Close(context.Context) error {
	s.pool.Close()
	return nil
}

// dbErr is the store error of a failed database call: the context's error
// when it ended, else store.ErrUnavailable with pgx's message (which names
// user and database, not the password; the password is removed anyway).
// pgx's error is not wrapped, so nothing holding the DSN travels with it.
func (s *Store) dbErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ctx.Err())) {
		return ctx.Err()
	}
	msg := err.Error()
	if s.secret != "" {
		msg = strings.ReplaceAll(msg, s.secret, "xxxxx")
	}
	return fmt.Errorf("%w: pgstore: %s: %s", store.ErrUnavailable, what, msg)
}

// logErr is the store error of a failed read of the log: store.ErrCorrupt
// when the log refused what it holds, store.ErrUnavailable when it could not
// be read at all.
func logErr(err error) error {
	if errors.Is(err, reject.ErrUnableToCheck) {
		return store.ErrUnavailable
	}
	return store.ErrCorrupt
}

func rawDigest(d string) []byte {
	b, _ := hex.DecodeString(strings.TrimPrefix(d, "sha256:"))
	return b
}

func hexDigest(b []byte) string { return "sha256:" + hex.EncodeToString(b) }

func rawDigests(ds []string) [][]byte {
	out := make([][]byte, len(ds))
	for i, d := range ds {
		out[i] = rawDigest(d)
	}
	return out
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, e store.Entry) (string, error) {
	d, _, err := s.PutIndexed(ctx, e)
	return d, err
}

// PutIndexed implements store.IndexedPutter: it stores e like Put and
// returns the log index of the record that holds it. Storing data already
// stored, with no new subject, returns the existing index and appends
// nothing.
func (s *Store) PutIndexed(ctx context.Context, e store.Entry) (digest string, index uint64, err error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if err := store.Validate(&e); err != nil {
		return "", 0, err
	}
	if s.served != nil {
		return s.putServed(ctx, e)
	}
	raw := rawDigest(e.Digest)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", 0, s.dbErr(ctx, "put "+e.Digest, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it does nothing
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(binary.BigEndian.Uint64(raw))); err != nil {
		return "", 0, s.dbErr(ctx, "put "+e.Digest, err)
	}
	var old int64
	exists := true
	if err := tx.QueryRow(ctx, `SELECT log_index FROM stepseal_entries WHERE digest = $1`, raw).Scan(&old); err == pgx.ErrNoRows {
		exists = false
	} else if err != nil {
		return "", 0, s.dbErr(ctx, "put "+e.Digest, err)
	}
	var added []string
	if exists {
		var have [][]byte
		if err := tx.QueryRow(ctx, `SELECT ARRAY(SELECT subject FROM stepseal_subjects WHERE digest = $1 ORDER BY subject)`, raw).Scan(&have); err != nil {
			return "", 0, s.dbErr(ctx, "put "+e.Digest, err)
		}
		haveSet := make(map[string]bool, len(have))
		for _, h := range have {
			haveSet[hexDigest(h)] = true
		}
		for _, sub := range e.Subjects {
			if !haveSet[sub] {
				added = append(added, sub)
			}
		}
		if len(added) == 0 {
			if err := tx.Commit(ctx); err != nil {
				return "", 0, s.dbErr(ctx, "put "+e.Digest+": commit", err)
			}
			return e.Digest, uint64(old), nil
		}
		for h := range haveSet {
			e.Subjects = append(e.Subjects, h)
		}
		sort.Strings(e.Subjects)
		e.Subjects = slices.Compact(e.Subjects)
	} else {
		added = e.Subjects
	}
	leaf, err := tlogstore.EncodeLeaf(e)
	if err != nil {
		return "", 0, fmt.Errorf("pgstore: encode %s: %w", e.Digest, err)
	}
	i, err := s.log.Append(ctx, leaf)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		if reject.Of(err) == nil {
			// The log could not take it (I/O, a log shut down): no verdict.
			err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return "", 0, fmt.Errorf("pgstore: put %s %q: %w", e.Kind, e.Name, err)
	}
	if exists {
		_, err = tx.Exec(ctx, `UPDATE stepseal_entries SET kind = $2, name = $3, run_id = $4, log_index = $5 WHERE digest = $1`,
			raw, e.Kind, e.Name, e.RunID, int64(i))
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO stepseal_entries (digest, kind, name, run_id, data, log_index) VALUES ($1, $2, $3, $4, $5, $6)`,
			raw, e.Kind, e.Name, e.RunID, e.Data, int64(i))
	}
	if err != nil {
		return "", 0, s.dbErr(ctx, fmt.Sprintf("put %s (log entry %d)", e.Digest, i), err)
	}
	if len(added) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO stepseal_subjects (subject, digest) SELECT unnest($1::bytea[]), $2 ON CONFLICT DO NOTHING`,
			rawDigests(added), raw); err != nil {
			return "", 0, s.dbErr(ctx, fmt.Sprintf("put %s (log entry %d)", e.Digest, i), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", 0, s.dbErr(ctx, fmt.Sprintf("put %s (log entry %d): commit", e.Digest, i), err)
	}
	return e.Digest, i, nil
}

// row is one entry as the database holds it.
type row struct {
	digest   string
	kind     string
	name     string
	runID    string
	data     []byte
	index    int64
	subjects []string
	// pending: the row is an intent (OpenServed), its document not yet
	// known to be in the log (log_index NULL).
	pending bool
}

const selectRow = `SELECT e.digest, e.kind, e.name, e.run_id, e.data, e.log_index,
	ARRAY(SELECT s.subject FROM stepseal_subjects s WHERE s.digest = e.digest ORDER BY s.subject)
	FROM stepseal_entries e`

func scanRows(rows pgx.Rows) ([]row, error) {
	defer rows.Close()
	var out []row
	for rows.Next() {
		var (
			r        row
			d        []byte
			index    *int64
			subjects [][]byte
		)
		if err := rows.Scan(&d, &r.kind, &r.name, &r.runID, &r.data, &index, &subjects); err != nil {
			return nil, err
		}
		if index == nil {
			r.pending = true
		} else {
			r.index = *index
		}
		r.digest = hexDigest(d)
		r.subjects = make([]string, len(subjects))
		for i, sub := range subjects {
			r.subjects[i] = hexDigest(sub)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// snapshot is the log's current tree, verified and consistent with every
// checkpoint the log's client has seen.
func (s *Store) snapshot(ctx context.Context) (*tlog.Snapshot, error) {
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: pgstore: %w", logErr(err), err)
	}
	return s.log.Client().Snapshot(cp)
}

// verify checks r against its log entry, read and verified in snap: a
// store-entry record as EncodeLeaf writes it, or with served, the record a
// served log derived from the document (verifyServed).
func verify(ctx context.Context, snap *tlog.Snapshot, r row, served bool) (store.Entry, error) {
	if r.pending {
		return store.Entry{}, fmt.Errorf("%w: %w: %s %q (%s) names no log entry", store.ErrCorrupt, ErrRowMismatch, r.kind, r.name, r.digest)
	}
	i, raw, err := rowEntry(ctx, snap, r)
	if err != nil {
		return store.Entry{}, err
	}
	if served {
		return verifyServed(r, i, raw)
	}
	leaf, err := tlogstore.ParseLeaf(raw)
	if err != nil {
		return store.Entry{}, fmt.Errorf("%w: %w: %s (log entry %d): %w", store.ErrCorrupt, ErrRowMismatch, r.digest, i, err)
	}
	var bad []string
	if leaf.Digest != r.digest {
		bad = append(bad, "log entry holds "+leaf.Digest)
	}
	if len(r.data) != leaf.Size || store.Digest(r.data) != leaf.Digest {
		bad = append(bad, "data")
	}
	if r.kind != leaf.Kind {
		bad = append(bad, fmt.Sprintf("kind %q (log: %q)", r.kind, leaf.Kind))
	}
	if r.name != leaf.Name {
		bad = append(bad, fmt.Sprintf("name %q (log: %q)", r.name, leaf.Name))
	}
	if r.runID != leaf.RunID {
		bad = append(bad, fmt.Sprintf("run %q (log: %q)", r.runID, leaf.RunID))
	}
	if len(r.subjects) != leaf.SubjectCount || tlogstore.SubjectsDigest(r.subjects) != leaf.SubjectsDigest {
		bad = append(bad, fmt.Sprintf("subjects (%d in the database, %d in the log)", len(r.subjects), leaf.SubjectCount))
	}
	if len(bad) > 0 {
		return store.Entry{}, fmt.Errorf("%w: %w: %s %q (%s, log entry %d): %s", store.ErrCorrupt, ErrRowMismatch, r.kind, r.name, r.digest, i, strings.Join(bad, ", "))
	}
	return store.Entry{Kind: r.kind, Name: r.name, RunID: r.runID, Subjects: r.subjects, Data: r.data, Digest: r.digest}, nil
}

// rowEntry reads and verifies, in snap, the log entry row r names: a
// negative index is store.ErrCorrupt; a log that could not be read,
// store.ErrUnavailable; an entry that failed verification,
// store.ErrCorrupt (logErr), each naming the row and the log entry.
func rowEntry(ctx context.Context, snap *tlog.Snapshot, r row) (uint64, []byte, error) {
	if r.index < 0 {
		return 0, nil, fmt.Errorf("%w: %w: %s names log entry %d", store.ErrCorrupt, ErrRowMismatch, r.digest, r.index)
	}
	i := uint64(r.index)
	raw, err := snap.Entry(ctx, i)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, fmt.Errorf("%w: %s %q (%s, log entry %d): %w", logErr(err), r.kind, r.name, r.digest, i, err)
	}
	return i, raw, nil
}

// verifyAll verifies rows in log order (one entry bundle read serves up to
// 256 entries) and returns them in the order given; each must pass f as the
// log says: the database only says where to look.
func verifyAll(ctx context.Context, snap *tlog.Snapshot, rows []row, f store.Filter, served bool) ([]store.Entry, error) {
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return rows[order[a]].index < rows[order[b]].index })
	out := make([]store.Entry, len(rows))
	for _, k := range order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := verify(ctx, snap, rows[k], served)
		if err != nil {
			return nil, err
		}
		if !f.Matches(e) {
			return nil, fmt.Errorf("%w: %w: the database says %s passes %+v, its log entry %d does not", store.ErrCorrupt, ErrRowMismatch, e.Digest, f, rows[k].index)
		}
		out[k] = e
	}
	return out, nil
}

// Fetch implements store.Store.
func (s *Store) Fetch(ctx context.Context, digest string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, err
	}
	if !store.ValidDigest(digest) {
		return store.Entry{}, fmt.Errorf("%w: %q is not sha256:<64 hex>", store.ErrInvalid, digest)
	}
	rows, err := s.pool.Query(ctx, selectRow+` WHERE e.digest = $1`, rawDigest(digest))
	if err != nil {
		return store.Entry{}, s.dbErr(ctx, "fetch "+digest, err)
	}
	rs, err := scanRows(rows)
	if err != nil {
		return store.Entry{}, s.dbErr(ctx, "fetch "+digest, err)
	}
	if rs, err = s.settle(ctx, rs); err != nil {
		return store.Entry{}, err
	}
	if len(rs) == 0 {
		return store.Entry{}, fmt.Errorf("%w: %s", store.ErrNotFound, digest)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return store.Entry{}, err
	}
	return verify(ctx, snap, rs[0], s.served != nil)
}

// LogIndex returns the log index of the record that holds digest.
func (s *Store) LogIndex(ctx context.Context, digest string) (uint64, error) {
	if !store.ValidDigest(digest) {
		return 0, fmt.Errorf("%w: %q is not sha256:<64 hex>", store.ErrInvalid, digest)
	}
	var i *int64
	err := s.pool.QueryRow(ctx, `SELECT log_index FROM stepseal_entries WHERE digest = $1`, rawDigest(digest)).Scan(&i)
	if err == pgx.ErrNoRows || (err == nil && i == nil) {
		return 0, fmt.Errorf("%w: %s", store.ErrNotFound, digest)
	}
	if err != nil {
		return 0, s.dbErr(ctx, "log index of "+digest, err)
	}
	return uint64(*i), nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, subject string) ([]store.Entry, error) {
	if !store.ValidDigest(subject) {
		return nil, fmt.Errorf("%w: subject %q is not sha256:<64 hex>", store.ErrInvalid, subject)
	}
	out, err := s.List(ctx, store.Filter{Subject: subject})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no entry for subject %s", store.ErrNotFound, subject)
	}
	return out, nil
}

// List implements store.Store, a page at a time against one checkpoint.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		out   []store.Entry
		after string
		snap  *tlog.Snapshot
	)
	for {
		rs, err := s.page(ctx, f, after, s.pageSize)
		if err != nil {
			return nil, err
		}
		if len(rs) == 0 {
			return out, nil
		}
		last, full := rs[len(rs)-1].digest, len(rs) == s.pageSize
		if rs, err = s.settle(ctx, rs); err != nil {
			return nil, err
		}
		if snap == nil && len(rs) > 0 {
			if snap, err = s.snapshot(ctx); err != nil {
				return nil, err
			}
		}
		es, err := verifyAll(ctx, snap, rs, f, s.served != nil)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
		if !full {
			return out, nil
		}
		after = last
	}
}

// ListPage implements store.Pager.
func (s *Store) ListPage(ctx context.Context, f store.Filter, after string, limit int) ([]store.Entry, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("%w: page limit %d", store.ErrInvalid, limit)
	}
	rs, err := s.page(ctx, f, after, limit)
	if err != nil || len(rs) == 0 {
		return nil, "", err
	}
	next := ""
	if len(rs) == limit {
		next = rs[len(rs)-1].digest
	}
	if rs, err = s.settle(ctx, rs); err != nil || len(rs) == 0 {
		return nil, next, err
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, "", err
	}
	es, err := verifyAll(ctx, snap, rs, f, s.served != nil)
	if err != nil {
		return nil, "", err
	}
	return es, next, nil
}

// page reads up to limit rows passing f with a digest after after, in
// digest order, each with an index scan: by subject through the subjects'
// primary key, by run or kind through their indexes.
func (s *Store) page(ctx context.Context, f store.Filter, after string, limit int) ([]row, error) {
	if f.Subject != "" && !store.ValidDigest(f.Subject) {
		return nil, fmt.Errorf("%w: subject %q is not sha256:<64 hex>", store.ErrInvalid, f.Subject)
	}
	if after != "" && !store.ValidDigest(after) {
		return nil, fmt.Errorf("%w: page start %q is not sha256:<64 hex>", store.ErrInvalid, after)
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	q := selectRow
	key := "e.digest"
	if f.Subject != "" {
		q += ` JOIN stepseal_subjects j ON j.digest = e.digest`
		key = "j.digest"
		where = append(where, "j.subject = "+arg(rawDigest(f.Subject)))
	}
	if f.Kind != "" {
		where = append(where, "e.kind = "+arg(f.Kind))
	}
	if f.RunID != "" {
		where = append(where, "e.run_id = "+arg(f.RunID))
	}
	if after != "" {
		where = append(where, key+" > "+arg(rawDigest(after)))
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + key + " LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.dbErr(ctx, "list", err)
	}
	rs, err := scanRows(rows)
	if err != nil {
		return nil, s.dbErr(ctx, "list", err)
	}
	return rs, nil
}

// ReadOnly is a Log that only reads and verifies, with the log's public
// key (a tlog.Client over the log's directory or URL): for verifiers and
// auditors reading the store, which never append. Its Append fails.
func ReadOnly(c *tlog.Client) Log { return readOnly{c} }

type readOnly struct{ c *tlog.Client }

func (r readOnly) Append(context.Context, []byte) (uint64, error) {
	return 0, errors.New("pgstore: the store was opened read-only (no log to append to)")
}

func (r readOnly) Checkpoint(ctx context.Context) (tlog.Checkpoint, error) {
	return r.c.Checkpoint(ctx)
}

func (r readOnly) Client() *tlog.Client { return r.c }

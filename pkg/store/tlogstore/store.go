package tlogstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Store keeps entries in a transparency log:
//
//	DIR/log/          the log (pkg/tlog): one record per Put that changed something
//	DIR/index         query index, one JSON line per log entry; rebuilt from the log when damaged
//	DIR/blobs/<hex>   documents and subject lists too large to be inline in their
//	                  record, named by their sha256 and bound by it in the record
//	DIR/lock          held while the Store is open (one Store per directory)
//
// Put appends a record and returns once a signed checkpoint covers it; then
// it writes the index line. A crash in between leaves an entry the index
// lacks, which Open adds back from the log: nothing is lost or duplicated,
// and a retried Put finds the entry and returns its index. Storing the same
// data with new subjects appends a record with the union of the subjects;
// the newest record of a digest is the entry. Reads verify the record's
// inclusion against the current checkpoint (which must extend every one
// seen before), check every blob the record binds, and report any failure
// as store.ErrCorrupt wrapping the tlog error, ErrBlobMissing or
// ErrBlobMismatch; a log or blob that cannot be read at all is
// store.ErrUnavailable, no verdict.
type Store struct {
	dir   string
	log   *tlog.Log
	lock  *os.File
	blobs blobDir

	locks keyLocks

	mu        sync.RWMutex
	byDigest  map[string]indexLine // newest record of each digest
	bySubject map[string]map[string]bool

	fileMu sync.Mutex
	index  *os.File
}

var _ store.Store = (*Store)(nil)

// logErr is the store error of a failed read of the log: store.ErrCorrupt
// when the log refused what it holds (a record or checkpoint that does not
// verify), store.ErrUnavailable when the log could not be read at all.
func logErr(err error) error {
	if errors.Is(err, reject.ErrUnableToCheck) {
		return store.ErrUnavailable
	}
	return store.ErrCorrupt
}

// Open opens (creating if needed) the store in dir, signing the log's
// checkpoints with key.
func Open(ctx context.Context, dir string, key tlog.Key, opts *tlog.Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: tlogstore: %w", store.ErrUnavailable, err)
	}
	lock, err := lockDir(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("%w: tlogstore: %w", store.ErrUnavailable, err)
	}
	l, err := tlog.Open(ctx, filepath.Join(dir, "log"), key, opts)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s := &Store{dir: dir, log: l, lock: lock, blobs: blobDir(filepath.Join(dir, "blobs"))}
	if err := s.loadIndex(ctx, false); err != nil {
		_ = l.Close(ctx)
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the log and releases the directory.
func (s *Store) Close(ctx context.Context) error {
	err := s.log.Close(ctx)
	s.fileMu.Lock()
	if s.index != nil {
		if cerr := s.index.Close(); err == nil {
			err = cerr
		}
		s.index = nil
	}
	s.fileMu.Unlock()
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return err
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Log is the transparency log under the store.
func (s *Store) Log() *tlog.Log { return s.log }

// LogCheckpoint implements store.Checkpointer: the log's current
// checkpoint, verified.
func (s *Store) LogCheckpoint(ctx context.Context) ([]byte, error) {
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return cp.Raw, nil
}

// Rebuild discards the index and derives it again from the log alone (an
// audit; Open repairs a damaged index by itself). Do not Put meanwhile: a Put
// that finishes during a Rebuild is indexed again only by the next Open.
func (s *Store) Rebuild(ctx context.Context) error {
	return s.loadIndex(ctx, true)
}

// loadIndex reads the index file, adds every log entry it lacks from the
// log (verified), and rewrites the file if it had to repair anything.
func (s *Store) loadIndex(ctx context.Context, discard bool) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", logErr(err), err)
	}
	path := filepath.Join(s.dir, "index")
	var lines []indexLine
	damaged := discard
	if !discard {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: tlogstore: %w", store.ErrUnavailable, err)
		}
		lines, damaged = splitIndex(b)
	}
	at := make(map[uint64]indexLine, cp.Size)
	for _, l := range lines {
		if l.I >= cp.Size {
			return fmt.Errorf("%w: %w: the index names log entry %d, the log's checkpoint %s has %d entries (log truncated or replaced)", store.ErrCorrupt, tlog.ErrRollback, l.I, cp, cp.Size)
		}
		if prev, ok := at[l.I]; ok && !slices.Equal(prev.encode(), l.encode()) {
			delete(at, l.I) // two different lines for one entry: ask the log
			damaged = true
			continue
		}
		at[l.I] = l
	}
	if uint64(len(at)) < cp.Size {
		damaged = true
		snap, err := s.log.Client().Snapshot(cp)
		if err != nil {
			return err
		}
		for i := uint64(0); i < cp.Size; i++ {
			if _, ok := at[i]; ok {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			data, err := snap.Entry(ctx, i)
			if err != nil {
				return fmt.Errorf("%w: rebuilding the index: %w", logErr(err), err)
			}
			r, err := parseRecord(data)
			if err != nil {
				return fmt.Errorf("%w: rebuilding the index: log entry %d: %w", store.ErrCorrupt, i, err)
			}
			subs, err := s.blobs.subjects(i, r)
			if err != nil {
				return fmt.Errorf("rebuilding the index: %w", err)
			}
			at[i] = lineOf(i, r, subs)
		}
	}
	ordered := make([]indexLine, 0, len(at))
	for _, l := range at {
		ordered = append(ordered, l)
	}
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].I < ordered[j].I })
	byDigest := map[string]indexLine{}
	for _, l := range ordered {
		byDigest[l.Digest] = l // later records of a digest win
	}
	bySubject := map[string]map[string]bool{}
	for d, l := range byDigest {
		for _, sub := range l.Subjects {
			if bySubject[sub] == nil {
				bySubject[sub] = map[string]bool{}
			}
			bySubject[sub][d] = true
		}
	}
	if damaged {
		var buf []byte
		for _, l := range ordered {
			buf = append(buf, l.encode()...)
		}
		if err := signing.WriteFileAtomic(path, buf, 0o644); err != nil {
			return fmt.Errorf("tlogstore: rewrite index: %w", err)
		}
	}
	if s.index != nil {
		s.index.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("tlogstore: %w", err)
	}
	s.index = f
	s.mu.Lock()
	s.byDigest, s.bySubject = byDigest, bySubject
	s.mu.Unlock()
	return nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, e store.Entry) (string, error) {
	d, _, err := s.PutIndexed(ctx, e)
	return d, err
}

// PutIndexed stores e like Put and also returns the log index of the record
// that holds it (for the stepseal.dev/log-index annotation). Storing data
// already stored, with no new subject, returns the existing index.
func (s *Store) PutIndexed(ctx context.Context, e store.Entry) (digest string, index uint64, err error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if err := store.Validate(&e); err != nil {
		return "", 0, err
	}
	unlock := s.locks.lock(e.Digest)
	defer unlock()
	s.mu.RLock()
	old, ok := s.byDigest[e.Digest]
	s.mu.RUnlock()
	if ok {
		merged := union(old.Subjects, e.Subjects)
		if slices.Equal(merged, old.Subjects) {
			return e.Digest, old.I, nil
		}
		e.Subjects = merged
	}
	enc, err := encodeRecord(e)
	if err != nil {
		return "", 0, fmt.Errorf("tlogstore: encode %s: %w", e.Digest, err)
	}
	// Blobs first: a record in the log always has its blobs (a crash in
	// between leaves only an unreferenced blob).
	if enc.data {
		if err := s.blobs.write(e.Digest, e.Data); err != nil {
			return "", 0, err
		}
	}
	if enc.subjects != nil {
		if err := s.blobs.write(store.Digest(enc.subjects), enc.subjects); err != nil {
			return "", 0, err
		}
	}
	i, err := s.log.Append(ctx, enc.rec)
	if err != nil {
		return "", 0, fmt.Errorf("tlogstore: put %s %q: %w", e.Kind, e.Name, err)
	}
	r, err := parseRecord(enc.rec)
	if err != nil {
		return "", 0, fmt.Errorf("tlogstore: log entry %d: %w", i, err) // encodeRecord and parseRecord disagree: a bug
	}
	line := lineOf(i, r, e.Subjects)
	s.apply(line, old, ok)
	// The log has the entry; a lost index line is restored on Open.
	if err := s.appendIndex(line); err != nil {
		return "", 0, fmt.Errorf("tlogstore: index line for log entry %d: %w", i, err)
	}
	return e.Digest, i, nil
}

func (s *Store) apply(l, old indexLine, hadOld bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hadOld {
		for _, sub := range old.Subjects {
			delete(s.bySubject[sub], l.Digest)
		}
	}
	s.byDigest[l.Digest] = l
	for _, sub := range l.Subjects {
		if s.bySubject[sub] == nil {
			s.bySubject[sub] = map[string]bool{}
		}
		s.bySubject[sub][l.Digest] = true
	}
}

func (s *Store) appendIndex(l indexLine) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.index == nil {
		return errors.New("store is closed")
	}
	_, err := s.index.Write(l.encode())
	return err
}

// LogIndex returns the log index of the record that holds digest.
func (s *Store) LogIndex(digest string) (uint64, error) {
	s.mu.RLock()
	l, ok := s.byDigest[digest]
	s.mu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("%w: %s", store.ErrNotFound, digest)
	}
	return l.I, nil
}

// snapshot is the current checkpoint, verified and consistent with every
// checkpoint this store has seen.
func (s *Store) snapshot(ctx context.Context) (*tlog.Snapshot, error) {
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", logErr(err), err)
	}
	return s.log.Client().Snapshot(cp)
}

// load reads the record of l from the log, verified, and the entry's data
// and subjects, checked against the record.
func (s *Store) load(ctx context.Context, snap *tlog.Snapshot, l indexLine) (store.Entry, record, error) {
	raw, err := snap.Entry(ctx, l.I)
	if err != nil {
		if ctx.Err() != nil {
			return store.Entry{}, record{}, ctx.Err()
		}
		return store.Entry{}, record{}, fmt.Errorf("%w: %s (log entry %d): %w", logErr(err), l.Digest, l.I, err)
	}
	r, err := parseRecord(raw)
	if err != nil {
		return store.Entry{}, r, fmt.Errorf("%w: %s (log entry %d): %w", store.ErrCorrupt, l.Digest, l.I, err)
	}
	if r.Digest != l.Digest {
		return store.Entry{}, r, fmt.Errorf("%w: log entry %d holds %s, the index says %s", store.ErrCorrupt, l.I, r.Digest, l.Digest)
	}
	subs, err := s.blobs.subjects(l.I, r)
	if err != nil {
		return store.Entry{}, r, err
	}
	data, err := s.blobs.data(l.I, r)
	if err != nil {
		return store.Entry{}, r, err
	}
	e := r.entry(subs)
	e.Data = data
	return e, r, nil
}

// Fetch implements store.Store.
func (s *Store) Fetch(ctx context.Context, digest string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, err
	}
	if !store.ValidDigest(digest) {
		return store.Entry{}, fmt.Errorf("%w: %q is not sha256:<64 hex>", store.ErrInvalid, digest)
	}
	s.mu.RLock()
	l, ok := s.byDigest[digest]
	s.mu.RUnlock()
	if !ok {
		return store.Entry{}, fmt.Errorf("%w: %s", store.ErrNotFound, digest)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return store.Entry{}, err
	}
	e, _, err := s.load(ctx, snap, l)
	return e, err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, subject string) ([]store.Entry, error) {
	if !store.ValidDigest(subject) {
		return nil, fmt.Errorf("%w: subject %q is not sha256:<64 hex>", store.ErrInvalid, subject)
	}
	s.mu.RLock()
	var lines []indexLine
	for d := range s.bySubject[subject] {
		lines = append(lines, s.byDigest[d])
	}
	s.mu.RUnlock()
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: no entry for subject %s", store.ErrNotFound, subject)
	}
	return s.loadAll(ctx, lines, store.Filter{Subject: subject})
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Entry, error) {
	s.mu.RLock()
	var lines []indexLine
	for _, l := range s.byDigest {
		if f.Matches(store.Entry{Kind: l.Kind, RunID: l.RunID, Subjects: l.Subjects}) {
			lines = append(lines, l)
		}
	}
	s.mu.RUnlock()
	if len(lines) == 0 {
		return nil, ctx.Err()
	}
	return s.loadAll(ctx, lines, f)
}

// loadAll loads lines in log order (one entry bundle read serves up to 256
// entries) and returns them ordered by digest. Each entry, as its record
// says, must pass f: the index only says where to look.
func (s *Store) loadAll(ctx context.Context, lines []indexLine, f store.Filter) ([]store.Entry, error) {
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i].I < lines[j].I })
	out := make([]store.Entry, 0, len(lines))
	for _, l := range lines {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, _, err := s.load(ctx, snap, l)
		if err != nil {
			return nil, err
		}
		if !f.Matches(e) {
			return nil, fmt.Errorf("%w: the index says log entry %d (%s) passes %+v, its record does not", store.ErrCorrupt, l.I, l.Digest, f)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// keyLocks serialises Puts of one digest (so each new record of a digest
// extends the previous one's subjects) while Puts of different digests run
// concurrently and share log batches.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

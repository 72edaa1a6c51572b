package logserver

// The index is in bbolt (go.etcd.io/bbolt, pure Go, already in the module
// graph): a search is a prefix scan over keys ordered by log index, which
// is exactly what cursor pagination needs, and one bbolt transaction commits
// a batch of rows and the watermark together. The SQL engines
// (modernc.org/sqlite, ncruces/go-sqlite3) would give the same guarantees
// at several times the build size and a query planner this index does not
// need.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stepseal/stepseal/pkg/store"
)

var (
	bucketMeta    = []byte("meta")    // "watermark" -> next log index to index
	bucketDigest  = []byte("digest")  // digest (32 bytes) -> log index of its first leaf
	bucketEntry   = []byte("entry")   // log index -> row (kind, run, digest)
	bucketSubject = []byte("subject") // subject (32 bytes) ‖ log index -> ""
	bucketKind    = []byte("kind")    // kind ‖ 0 ‖ log index -> ""
	bucketRun     = []byte("run")     // run ‖ 0 ‖ log index -> ""
	bucketAlias   = []byte("alias")   // log index -> digest: a later leaf of a digest already indexed
	bucketSkipped = []byte("skipped") // log index -> why: a leaf that is not a store record
	keyWatermark  = []byte("watermark")
)

// Index is the persistent search index of one log: rows derived from the
// log's records, and the watermark up to which they are complete. It is
// safe for concurrent use (bbolt serialises writers).
type Index struct {
	db *bolt.DB
	// beforeCommit, when set, sees each Apply's rows inside its
	// transaction, before the commit: the crash tests' fault-injection
	// point (a process killed there has the leaves in the log and not in
	// the index).
	beforeCommit atomic.Pointer[func([]Row)]
}

// OpenIndex opens (creating) the index database at path.
func OpenIndex(path string) (*Index, error) {
	// A large initial mapping (address space, not memory) spares the
	// remaps of a growing file: each one waits for every read
	// transaction and blocks new ones, so writers' digest lookups stalled
	// behind the follower's commits.
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistMapType, InitialMmapSize: 1 << 30})
	if err != nil {
		return nil, fmt.Errorf("%w: index %s: %w", ErrUnavailable, path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketDigest, bucketEntry, bucketSubject, bucketKind, bucketRun, bucketAlias, bucketSkipped} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: index %s: %w", ErrUnavailable, path, err)
	}
	return &Index{db: db}, nil
}

// Close closes the database.
func (x *Index) Close() error { return x.db.Close() }

// Row is what the index keeps of one log entry.
type Row struct {
	Index  uint64
	Kind   string
	RunID  string
	Digest string
	// Offset is where the leaf's length prefix starts in its entry bundle
	// (unchanged as the bundle fills), so a search reads just the leaf.
	Offset uint32
	// Subjects are only set on rows given to Apply.
	Subjects []string
	// Skip is why a leaf is not indexed (not a store record); set on rows
	// given to Apply instead of the fields above.
	Skip string
}

func u64(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

func digestKey(d string) []byte {
	b, err := hex.DecodeString(strings.TrimPrefix(d, "sha256:"))
	if err != nil || len(b) != 32 {
		return nil
	}
	return b
}

func encodeRow(r Row) []byte {
	return []byte(r.Kind + "\x00" + r.RunID + "\x00" + r.Digest + "\x00" + strconv.FormatUint(uint64(r.Offset), 10))
}

func decodeRow(i uint64, v []byte) (Row, error) {
	parts := strings.Split(string(v), "\x00")
	if len(parts) != 4 {
		return Row{}, fmt.Errorf("%w: index row of log entry %d is malformed", ErrIndexCorrupt, i)
	}
	off, err := strconv.ParseUint(parts[3], 10, 32)
	if err != nil {
		return Row{}, fmt.Errorf("%w: index row of log entry %d is malformed", ErrIndexCorrupt, i)
	}
	return Row{Index: i, Kind: parts[0], RunID: parts[1], Digest: parts[2], Offset: uint32(off)}, nil
}

// Watermark is the number of log entries the index covers: entries
// 0..Watermark-1 are indexed.
func (x *Index) Watermark() (uint64, error) {
	var w uint64
	err := x.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWatermark); len(v) == 8 {
			w = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return w, err
}

// Apply indexes rows (log entries from the current watermark on, in order)
// and moves the watermark to next, in one transaction: a crash leaves
// either all of it or none. A digest already indexed is recorded as an
// alias of its first leaf, not indexed twice.
func (x *Index) Apply(rows []Row, next uint64) (aliases int, err error) {
	err = x.db.Update(func(tx *bolt.Tx) error {
		aliases = 0
		meta := tx.Bucket(bucketMeta)
		var w uint64
		if v := meta.Get(keyWatermark); len(v) == 8 {
			w = binary.BigEndian.Uint64(v)
		}
		digests, entries, subjects := tx.Bucket(bucketDigest), tx.Bucket(bucketEntry), tx.Bucket(bucketSubject)
		kinds, runs := tx.Bucket(bucketKind), tx.Bucket(bucketRun)
		for _, r := range rows {
			if r.Index < w {
				continue // indexed by an earlier Apply
			}
			ik := u64(r.Index)
			if r.Skip != "" {
				if err := tx.Bucket(bucketSkipped).Put(ik, []byte(r.Skip)); err != nil {
					return err
				}
				continue
			}
			dk := digestKey(r.Digest)
			if dk == nil {
				return fmt.Errorf("row %d: digest %q", r.Index, r.Digest)
			}
			if digests.Get(dk) != nil {
				aliases++
				if err := tx.Bucket(bucketAlias).Put(ik, []byte(r.Digest)); err != nil {
					return err
				}
				continue
			}
			if err := digests.Put(dk, ik); err != nil {
				return err
			}
			if err := entries.Put(ik, encodeRow(r)); err != nil {
				return err
			}
			for _, s := range r.Subjects {
				sk := digestKey(s)
				if sk == nil {
					return fmt.Errorf("row %d: subject %q", r.Index, s)
				}
				if err := subjects.Put(append(sk, ik...), nil); err != nil {
					return err
				}
			}
			if err := kinds.Put(append([]byte(r.Kind+"\x00"), ik...), nil); err != nil {
				return err
			}
			if r.RunID != "" {
				if err := runs.Put(append([]byte(r.RunID+"\x00"), ik...), nil); err != nil {
					return err
				}
			}
		}
		if hook := x.beforeCommit.Load(); hook != nil {
			(*hook)(rows)
		}
		if next > w {
			return meta.Put(keyWatermark, u64(next))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: index: %w", ErrUnavailable, err)
	}
	return aliases, nil
}

// Lookup returns the log index of the first leaf holding digest.
func (x *Index) Lookup(digest string) (uint64, bool, error) {
	dk := digestKey(digest)
	if dk == nil {
		return 0, false, nil
	}
	var i uint64
	var ok bool
	err := x.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketDigest).Get(dk); len(v) == 8 {
			i, ok = binary.BigEndian.Uint64(v), true
		}
		return nil
	})
	return i, ok, err
}

// Query selects entries in Search. Zero fields match everything.
type Query struct {
	Subject string
	Kind    string
	RunID   string
}

func (q Query) String() string {
	var p []string
	if q.Subject != "" {
		p = append(p, "subject "+q.Subject)
	}
	if q.Kind != "" {
		p = append(p, "kind "+q.Kind)
	}
	if q.RunID != "" {
		p = append(p, fmt.Sprintf("run %q", q.RunID))
	}
	if len(p) == 0 {
		return "every entry"
	}
	return strings.Join(p, ", ")
}

// matches reports whether an entry passes q.
func (q Query) matches(e store.Entry) bool {
	return store.Filter{Kind: q.Kind, RunID: q.RunID, Subject: q.Subject}.Matches(e)
}

// Search returns the rows matching q with a log index at or above from and
// below before, in log index order, at most limit of them. more reports
// whether a matching row below before was left out.
func (x *Index) Search(q Query, from, before uint64, limit int) (rows []Row, more bool, err error) {
	err = x.db.View(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntry)
		var b *bolt.Bucket
		var prefix []byte
		switch {
		case q.Subject != "":
			b, prefix = tx.Bucket(bucketSubject), digestKey(q.Subject)
			if prefix == nil {
				return nil
			}
		case q.RunID != "":
			b, prefix = tx.Bucket(bucketRun), []byte(q.RunID+"\x00")
		case q.Kind != "":
			b, prefix = tx.Bucket(bucketKind), []byte(q.Kind+"\x00")
		default:
			b = entries
		}
		c := b.Cursor()
		for k, _ := c.Seek(append(bytes.Clone(prefix), u64(from)...)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			i := binary.BigEndian.Uint64(k[len(prefix):])
			if i >= before {
				return nil
			}
			v := entries.Get(u64(i))
			if v == nil {
				return fmt.Errorf("%w: %s points at log entry %d, which has no row", ErrIndexCorrupt, q, i)
			}
			r, err := decodeRow(i, v)
			if err != nil {
				return err
			}
			if (q.Kind != "" && r.Kind != q.Kind) || (q.RunID != "" && r.RunID != q.RunID) {
				continue
			}
			if len(rows) == limit {
				more = true
				return nil
			}
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrIndexCorrupt) {
		err = fmt.Errorf("%w: index: %w", ErrUnavailable, err)
	}
	return rows, more, err
}

// Aliases returns the later leaves of digests already indexed, by log index.
func (x *Index) Aliases() (map[uint64]string, error) {
	out := map[uint64]string{}
	err := x.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAlias).ForEach(func(k, v []byte) error {
			if len(k) == 8 {
				out[binary.BigEndian.Uint64(k)] = string(v)
			}
			return nil
		})
	})
	return out, err
}

package dirstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Store keeps entries in a directory:
//
//	DIR/entries/<hex>.data   the document, byte for byte
//	DIR/entries/<hex>.json   its store.Entry metadata (kind, name, run, subjects)
//	DIR/subjects/<hex>/<hex> empty marker: subject -> entry
//	DIR/runs/<sha256 of run ID>/<hex> empty marker: run -> entry
//
// Every file is written with write-to-temp, fsync, rename: a crash leaves an
// entry either complete or absent. Data is written before metadata and
// markers, so a visible entry always has its data. Reads re-hash the data
// and report store.ErrCorrupt when it was changed or removed on disk, and
// store.ErrUnavailable when a file cannot be read or written at all.
//
// Get and List by subject or run read only that subject's or run's markers,
// so the controller's per-run lookups cost the same in a store of a million
// entries as in an empty one. Only List without a subject or run reads
// every entry.
type Store struct {
	root string
	mu   sync.Mutex // serialises writers within a process; files make it safe across processes
}

// Open opens (creating if needed) a directory store at root.
func Open(root string) (*Store, error) {
	for _, d := range []string{"entries", "subjects", "runs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, unavailable(err, "store %s", root)
		}
	}
	s := &Store{root: root}
	if err := s.indexRuns(); err != nil {
		return nil, fmt.Errorf("store %s: indexing runs: %w", root, err)
	}
	return s, nil
}

// runsIndexed marks a store whose runs/ index covers every entry (stores
// written before the index existed get it built once, on open).
const runsIndexed = "runs/.indexed"

func (s *Store) indexRuns() error {
	done := filepath.Join(s.root, runsIndexed)
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	names, err := os.ReadDir(filepath.Join(s.root, "entries"))
	if err != nil {
		return unavailable(err, "entries")
	}
	for _, n := range names {
		h, ok := strings.CutSuffix(n.Name(), ".json")
		if !ok || strings.HasPrefix(h, ".") {
			continue
		}
		meta, err := s.readMeta(h)
		if err != nil {
			return err
		}
		if err := s.mark(s.runDir(meta.RunID), h); err != nil {
			return err
		}
	}
	if err := signing.WriteFileAtomic(done, nil, 0o644); err != nil {
		return unavailable(err, "%s", runsIndexed)
	}
	return nil
}

// runDir is the marker directory of run ID id; "" for no run.
func (s *Store) runDir(id string) string {
	if id == "" {
		return ""
	}
	return filepath.Join(s.root, "runs", hexOf(store.Digest([]byte(id))))
}

// mark writes the empty marker dir/h; nothing when dir is "".
func (s *Store) mark(dir, h string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return unavailable(err, "marker of sha256:%s", h)
	}
	if err := signing.WriteFileAtomic(filepath.Join(dir, h), nil, 0o644); err != nil {
		return unavailable(err, "marker of sha256:%s", h)
	}
	return nil
}

// unavailable is a failed read or write of the directory: the store could
// not be used, which says nothing about any entry.
func unavailable(err error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", store.ErrUnavailable, fmt.Sprintf(format, args...), err)
}

func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, e store.Entry) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := store.Validate(&e); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := hexOf(e.Digest)
	dataPath := filepath.Join(s.root, "entries", h+".data")
	metaPath := filepath.Join(s.root, "entries", h+".json")
	if _, err := os.Stat(metaPath); err == nil {
		// Idempotent: the same bytes are already stored. Add any new subjects.
		old, err := s.readMeta(h)
		if err != nil {
			return "", err
		}
		merged := append(append([]string{}, old.Subjects...), e.Subjects...)
		e.Subjects = merged
		if err := store.Validate(&e); err != nil {
			return "", err
		}
		if slices.Equal(old.Subjects, e.Subjects) {
			return e.Digest, nil
		}
	} else if err := signing.WriteFileAtomic(dataPath, e.Data, 0o644); err != nil {
		return "", unavailable(err, "store put %s", e.Name)
	}
	for _, sub := range e.Subjects {
		if err := s.mark(filepath.Join(s.root, "subjects", hexOf(sub)), h); err != nil {
			return "", err
		}
	}
	if err := s.mark(s.runDir(e.RunID), h); err != nil {
		return "", err
	}
	meta, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	if err := signing.WriteFileAtomic(metaPath, meta, 0o644); err != nil {
		return "", unavailable(err, "store put %s", e.Name)
	}
	return e.Digest, nil
}

func (s *Store) readMeta(h string) (store.Entry, error) {
	var e store.Entry
	b, err := os.ReadFile(filepath.Join(s.root, "entries", h+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return e, fmt.Errorf("%w: sha256:%s", store.ErrNotFound, h)
	}
	if err != nil {
		return e, unavailable(err, "metadata of sha256:%s", h)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%w: metadata of sha256:%s: %w", store.ErrCorrupt, h, err)
	}
	if e.Digest != "sha256:"+h {
		return e, fmt.Errorf("%w: metadata of sha256:%s names digest %s", store.ErrCorrupt, h, e.Digest)
	}
	return e, nil
}

func (s *Store) load(h string) (store.Entry, error) {
	e, err := s.readMeta(h)
	if err != nil {
		return e, err
	}
	f, err := os.Open(filepath.Join(s.root, "entries", h+".data"))
	if errors.Is(err, os.ErrNotExist) {
		// Its metadata is there and data is written first: removed since.
		return e, fmt.Errorf("%w: data of sha256:%s: %w", store.ErrCorrupt, h, err)
	}
	if err != nil {
		return e, unavailable(err, "data of sha256:%s", h)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, store.MaxEntrySize+1))
	if err != nil {
		return e, unavailable(err, "data of sha256:%s", h)
	}
	if store.Digest(data) != e.Digest {
		return e, fmt.Errorf("%w: %s %q (%s): stored data does not match its digest", store.ErrCorrupt, e.Kind, e.Name, e.Digest)
	}
	e.Data = data
	return e, nil
}

// Fetch implements store.Store.
func (s *Store) Fetch(ctx context.Context, digest string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, err
	}
	if !store.ValidDigest(digest) {
		return store.Entry{}, fmt.Errorf("%w: %q is not sha256:<64 hex>", store.ErrInvalid, digest)
	}
	return s.load(hexOf(digest))
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, subject string) ([]store.Entry, error) {
	if !store.ValidDigest(subject) {
		return nil, fmt.Errorf("%w: subject %q is not sha256:<64 hex>", store.ErrInvalid, subject)
	}
	out, err := s.marked(ctx, filepath.Join(s.root, "subjects", hexOf(subject)), store.Filter{})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no entry for subject %s", store.ErrNotFound, subject)
	}
	return out, nil
}

// marked returns the entries with a marker in dir that pass f, ordered by
// digest.
func (s *Store) marked(ctx context.Context, dir string, f store.Filter) ([]store.Entry, error) {
	names, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err, "markers")
	}
	var out []store.Entry
	for _, n := range names {
		if strings.HasPrefix(n.Name(), ".") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := s.load(n.Name())
		if errors.Is(err, store.ErrNotFound) {
			continue // marker written, metadata not yet: a Put in progress or interrupted
		}
		if err != nil {
			return nil, err
		}
		if f.Matches(e) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Entry, error) {
	switch {
	case f.RunID != "":
		return s.marked(ctx, s.runDir(f.RunID), f)
	case f.Subject != "":
		if !store.ValidDigest(f.Subject) {
			return nil, nil // no entry can list it
		}
		return s.marked(ctx, filepath.Join(s.root, "subjects", hexOf(f.Subject)), f)
	}
	names, err := os.ReadDir(filepath.Join(s.root, "entries"))
	if err != nil {
		return nil, unavailable(err, "entries")
	}
	var out []store.Entry
	for _, n := range names {
		h, ok := strings.CutSuffix(n.Name(), ".json")
		if !ok || strings.HasPrefix(h, ".") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		meta, err := s.readMeta(h)
		if err != nil {
			return nil, err
		}
		if !f.Matches(meta) {
			continue
		}
		e, err := s.load(h)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

var _ store.Store = (*Store)(nil)

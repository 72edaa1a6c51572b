package tlogstore

import (
	"context"
	"fmt"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
	"golang.org/x/mod/sumdb/note"
)

// Proof lets anyone holding the log's public key check that an entry is in
// the log, without the store: the record, where it is, the signed
// checkpoint, and the inclusion proof's hashes.
type Proof struct {
	Index      uint64   `json:"index"`
	Record     []byte   `json:"record"`
	Checkpoint []byte   `json:"checkpoint"`
	Hashes     [][]byte `json:"hashes"`
}

// Prove returns the proof of the record that holds digest, against the
// current checkpoint; it verifies it before returning it.
func (s *Store) Prove(ctx context.Context, digest string) (Proof, error) {
	s.mu.RLock()
	l, ok := s.byDigest[digest]
	s.mu.RUnlock()
	if !ok {
		return Proof{}, fmt.Errorf("%w: %s", store.ErrNotFound, digest)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return Proof{}, err
	}
	raw, err := snap.Entry(ctx, l.I)
	if err != nil {
		return Proof{}, fmt.Errorf("%w: %s (log entry %d): %w", store.ErrCorrupt, digest, l.I, err)
	}
	cp := snap.Checkpoint()
	hashes, err := s.log.InclusionProof(ctx, l.I, cp.Size)
	if err != nil {
		return Proof{}, fmt.Errorf("%w: %s (log entry %d): %w", store.ErrCorrupt, digest, l.I, err)
	}
	p := Proof{Index: l.I, Record: raw, Checkpoint: cp.Raw, Hashes: hashes}
	if _, err := VerifyProof(s.log.Verifier(), p); err != nil {
		return Proof{}, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	return p, nil
}

// VerifyProof checks p with the log's public key and returns the entry it
// proves. Data is set when it is inline in the record; for a large entry it
// is nil and the caller must check the data it has against Entry.Digest.
// Failures are tlog.ErrBadCheckpoint, tlog.ErrInclusion, or store.ErrCorrupt
// for a record that does not parse.
func VerifyProof(v note.Verifier, p Proof) (store.Entry, error) {
	cp, err := tlog.ParseCheckpoint(p.Checkpoint, v)
	if err != nil {
		return store.Entry{}, err
	}
	if err := tlog.VerifyInclusionProof(p.Record, p.Index, cp, p.Hashes); err != nil {
		return store.Entry{}, err
	}
	r, err := parseRecord(p.Record)
	if err != nil {
		return store.Entry{}, fmt.Errorf("%w: log entry %d: %v", store.ErrCorrupt, p.Index, err)
	}
	return r.entry(), nil
}

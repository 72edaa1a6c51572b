package tlogstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
	"golang.org/x/mod/sumdb/note"
)

// Proof lets anyone holding the log's public key check that an entry is in
// the log, without the store: the record, where it is, the signed
// checkpoint, the inclusion proof's hashes and, when the record binds its
// subjects by digest rather than listing them, the subject list.
type Proof struct {
	Index      uint64   `json:"index"`
	Record     []byte   `json:"record"`
	Checkpoint []byte   `json:"checkpoint"`
	Hashes     [][]byte `json:"hashes"`
	// SubjectList is the record's subject list (sha256 digests, one a
	// line) when it is not inline in the record.
	SubjectList []byte `json:"subjectList,omitempty"`
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
		return Proof{}, fmt.Errorf("%w: %s (log entry %d): %w", logErr(err), digest, l.I, err)
	}
	r, err := parseRecord(raw)
	if err != nil {
		return Proof{}, fmt.Errorf("%w: %s (log entry %d): %w", store.ErrCorrupt, digest, l.I, err)
	}
	cp := snap.Checkpoint()
	hashes, err := s.log.InclusionProof(ctx, l.I, cp.Size)
	if err != nil {
		return Proof{}, fmt.Errorf("%w: %s (log entry %d): %w", logErr(err), digest, l.I, err)
	}
	p := Proof{Index: l.I, Record: raw, Checkpoint: cp.Raw, Hashes: hashes}
	if !r.inlineSubjects() {
		if p.SubjectList, err = s.blobs.read(l.I, r, "subject list", r.SubjectsDigest, r.SubjectCount*subjectLine); err != nil {
			return Proof{}, err
		}
	}
	if _, err := VerifyProof(s.log.Verifier(), p); err != nil {
		return Proof{}, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	return p, nil
}

// VerifyProof checks p with the log's public key and returns the entry it
// proves, with all its subjects. Data is set when it is inline in the
// record; for a large entry it is nil and the caller must check the data it
// has against Entry.Digest. Failures are tlog.ErrBadCheckpoint,
// tlog.ErrInclusion, store.ErrCorrupt for a record that does not parse,
// and ErrBlobMissing or ErrBlobMismatch (with store.ErrCorrupt) for a
// subject list the record binds that the proof lacks or that does not match.
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
		return store.Entry{}, fmt.Errorf("%w: log entry %d: %w", store.ErrCorrupt, p.Index, err)
	}
	if r.inlineSubjects() {
		if p.SubjectList != nil {
			return store.Entry{}, fmt.Errorf("%w: log entry %d, %s: the proof carries a subject list, the record lists its subjects itself", store.ErrCorrupt, p.Index, r)
		}
		return r.entry(nil), nil
	}
	var blobs blobDir // the proof carries the blob; errors name it as blobs/<hex> all the same
	if p.SubjectList == nil {
		return store.Entry{}, blobs.err(ErrBlobMissing, p.Index, r, "subject list", r.SubjectsDigest, errors.New("not in the proof"))
	}
	if len(p.SubjectList) != r.SubjectCount*subjectLine || store.Digest(p.SubjectList) != r.SubjectsDigest {
		return store.Entry{}, blobs.err(ErrBlobMismatch, p.Index, r, "subject list", r.SubjectsDigest, fmt.Errorf("the proof's list has %d bytes with digest %s", len(p.SubjectList), store.Digest(p.SubjectList)))
	}
	subs, err := blobs.parseSubjects(p.Index, r, p.SubjectList)
	if err != nil {
		return store.Entry{}, err
	}
	return r.entry(subs), nil
}

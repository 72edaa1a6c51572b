package tlogstore

import (
	"fmt"

	"github.com/stepseal/stepseal/pkg/store"
)

// Leaf is what a store record in the log binds about one entry: for stores
// that keep the documents (and the subject index) elsewhere and the record
// in the log (pkg/store/pgstore). Such a store checks what it holds against
// the Leaf on every read.
type Leaf struct {
	Kind  string
	Name  string
	RunID string
	// Digest and Size bind the document.
	Digest string
	Size   int
	// SubjectCount and SubjectsDigest bind the sorted, unique subject list
	// (SubjectsDigest computes the digest of a list).
	SubjectCount   int
	SubjectsDigest string
}

// EncodeLeaf encodes a validated entry (store.Validate) as a record of this
// package's format (so the same audit reads both stores' logs), with the
// document never inline and the subjects inline when they fit.
func EncodeLeaf(e store.Entry) ([]byte, error) {
	enc, err := encodeRecordData(e, false)
	if err != nil {
		return nil, err
	}
	return enc.rec, nil
}

// ParseLeaf decodes a log entry EncodeLeaf (or this package's Store) wrote,
// refusing anything not in the canonical form.
func ParseLeaf(b []byte) (Leaf, error) {
	r, err := parseRecord(b)
	if err != nil {
		return Leaf{}, err
	}
	return Leaf{Kind: r.Kind, Name: r.Name, RunID: r.RunID, Digest: r.Digest, Size: r.Size,
		SubjectCount: r.SubjectCount, SubjectsDigest: r.SubjectsDigest}, nil
}

// SubjectsDigest is the digest a Leaf binds a subject list with; subjects
// must be sorted and unique (as store.Validate leaves them).
func SubjectsDigest(subjects []string) string { return store.Digest(encodeSubjects(subjects)) }

// String names the leaf's entry in messages.
func (l Leaf) String() string { return fmt.Sprintf("%s %q (%s)", l.Kind, l.Name, l.Digest) }

package tlogstore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Record formats. Put writes v2; v1 records (stores written before v2) are
// still read and verified.
const (
	recordType   = "stepseal.dev/store-entry/v2"
	recordTypeV1 = "stepseal.dev/store-entry/v1"
)

// record is one log entry: what the store knows about an entry, in the
// canonical JSON encoding/json gives this struct (fields in this order,
// subjects sorted). A v2 record fits a log entry (at most 64 KiB) whatever
// the document's size and the number of subjects:
//
//   - Digest and Size bind the document. Data holds it inline when the
//     record still fits; otherwise it is blobs/<hex of Digest>.
//   - SubjectCount and SubjectsDigest bind the subject list (see
//     encodeSubjects). Subjects holds it inline when the record still fits;
//     otherwise it is blobs/<hex of SubjectsDigest>.
//
// Either way every leaf names its subjects, so an auditor can rebuild the
// subject index from the log and the blobs beside it; a blob is checked
// against the leaf on every read.
type record struct {
	Type           string   `json:"type"`
	Kind           string   `json:"kind"`
	Name           string   `json:"name"`
	RunID          string   `json:"runID,omitempty"`
	Digest         string   `json:"digest"`
	Size           int      `json:"size"`
	SubjectCount   int      `json:"subjectCount"`
	SubjectsDigest string   `json:"subjectsDigest"`
	Subjects       []string `json:"subjects,omitempty"`
	Data           []byte   `json:"data,omitempty"`

	// v1 is set on records read in the v1 format.
	v1 bool
}

// recordV1 is the format of stores written before v2: subjects always
// inline, data inline when it fits. A link with more than ~880 products did
// not fit, which is why v2 exists.
type recordV1 struct {
	Type     string   `json:"type"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	RunID    string   `json:"runID,omitempty"`
	Subjects []string `json:"subjects"`
	Digest   string   `json:"digest"`
	Size     int      `json:"size"`
	Data     []byte   `json:"data,omitempty"`
}

// subjectLine is the length of one line of a subject list.
const subjectLine = len("sha256:") + 64 + 1

// emptySubjects is the digest of the empty subject list.
var emptySubjects = store.Digest(nil)

// encodeSubjects is the canonical subject list: the sorted, unique
// subjects, each followed by a newline.
func encodeSubjects(subjects []string) []byte {
	b := make([]byte, 0, len(subjects)*subjectLine)
	for _, s := range subjects {
		b = append(append(b, s...), '\n')
	}
	return b
}

// parseSubjects decodes a subject list of count subjects, refusing anything
// encodeSubjects would not have written. The subjects share one string.
func parseSubjects(b []byte, count int) ([]string, error) {
	if len(b) != count*subjectLine {
		return nil, fmt.Errorf("%d bytes, want %d for %d subjects", len(b), count*subjectLine, count)
	}
	all := string(b)
	out := make([]string, count)
	for i := range out {
		line := all[i*subjectLine : (i+1)*subjectLine]
		s := line[:subjectLine-1]
		if line[subjectLine-1] != '\n' || !store.ValidDigest(s) {
			return nil, fmt.Errorf("line %d is not sha256:<64 hex>", i+1)
		}
		if i > 0 && out[i-1] >= s {
			return nil, fmt.Errorf("line %d: subjects not sorted and unique", i+1)
		}
		out[i] = s
	}
	return out, nil
}

// encoded is a record ready to append, with the blobs it binds that are not
// inline in it.
type encoded struct {
	rec []byte
	// data is set when the document goes to blobs/.
	data bool
	// subjects is the subject list when it goes to blobs/.
	subjects []byte
}

// encodeRecord encodes a validated entry as a v2 record, inlining what fits:
// the subjects first (a leaf that lists its subjects can be searched without
// its blobs), then the document.
func encodeRecord(e store.Entry) (encoded, error) { return encodeRecordData(e, true) }

// encodeRecordData is encodeRecord; with inlineData false the document is
// never inline (it is kept elsewhere, bound by its digest and size).
func encodeRecordData(e store.Entry, inlineData bool) (encoded, error) {
	list := encodeSubjects(e.Subjects)
	r := record{Type: recordType, Kind: e.Kind, Name: e.Name, RunID: e.RunID, Digest: e.Digest, Size: len(e.Data),
		SubjectCount: len(e.Subjects), SubjectsDigest: store.Digest(list)}
	for _, c := range []struct{ subjects, data bool }{{true, true}, {true, false}, {false, true}, {false, false}} {
		// Skip what cannot fit without encoding it: a subject is 73 bytes
		// of JSON at least, data grows by a third in base64.
		if c.data && !inlineData ||
			c.subjects && len(e.Subjects)*(subjectLine+2) > tlog.MaxEntrySize ||
			c.data && base64.StdEncoding.EncodedLen(len(e.Data)) > tlog.MaxEntrySize {
			continue
		}
		r.Subjects, r.Data = nil, nil
		if c.subjects && len(e.Subjects) > 0 {
			r.Subjects = e.Subjects
		}
		if c.data {
			r.Data = e.Data
		}
		b, err := json.Marshal(r)
		if err != nil {
			return encoded{}, err
		}
		if len(b) > tlog.MaxEntrySize {
			continue
		}
		out := encoded{rec: b, data: !c.data}
		if !c.subjects && len(e.Subjects) > 0 {
			out.subjects = list
		}
		return out, nil
	}
	// store.Validate bounds the name and run ID, so this does not happen.
	return encoded{}, fmt.Errorf("the record of %s %q does not fit a log entry of %d bytes", e.Kind, e.Name, tlog.MaxEntrySize)
}

// parseRecord decodes a log entry, refusing anything encodeRecord (or, for
// v1 records, the v1 encoder) would not have written.
func parseRecord(b []byte) (record, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return record{}, fmt.Errorf("not a store record: %w", err)
	}
	switch head.Type {
	case recordType:
		return parseV2(b)
	case recordTypeV1:
		return parseV1(b)
	}
	return record{}, fmt.Errorf("record type %q, want %q (or %q)", head.Type, recordType, recordTypeV1)
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a store record: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("not a store record: trailing data")
	}
	return nil
}

func parseV2(b []byte) (record, error) {
	var r record
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := checkFields(r.Kind, r.Digest, r.Subjects); err != nil {
		return r, err
	}
	if err := checkName(r.Digest, r.Name, r.Size); err != nil {
		return r, err
	}
	if strings.ContainsAny(r.RunID, "\x00\n") || len(r.RunID) > store.MaxNameSize {
		return r, fmt.Errorf("record %s: bad run ID", r.Digest)
	}
	if r.SubjectCount < 0 || r.SubjectCount > store.MaxSubjects {
		return r, fmt.Errorf("record %s: subject count %d", r.Digest, r.SubjectCount)
	}
	if !store.ValidDigest(r.SubjectsDigest) {
		return r, fmt.Errorf("record %s: subjects digest %q is not sha256:<64 hex>", r.Digest, r.SubjectsDigest)
	}
	if r.SubjectCount == 0 && r.SubjectsDigest != emptySubjects {
		return r, fmt.Errorf("record %s: no subjects, but a subject list digest %s", r.Digest, r.SubjectsDigest)
	}
	if r.Subjects != nil {
		if len(r.Subjects) != r.SubjectCount || store.Digest(encodeSubjects(r.Subjects)) != r.SubjectsDigest {
			return r, fmt.Errorf("record %s: inline subjects do not match their count and digest", r.Digest)
		}
	}
	if err := checkInlineData(r.Digest, r.Size, r.Data); err != nil {
		return r, err
	}
	again, err := json.Marshal(r)
	if err != nil || !bytes.Equal(again, b) {
		return r, fmt.Errorf("record %s: not in canonical form", r.Digest)
	}
	return r, nil
}

func parseV1(b []byte) (record, error) {
	var v recordV1
	if err := decodeStrict(b, &v); err != nil {
		return record{}, err
	}
	if err := checkFields(v.Kind, v.Digest, v.Subjects); err != nil {
		return record{}, err
	}
	if err := checkName(v.Digest, v.Name, v.Size); err != nil {
		return record{}, err
	}
	if err := checkInlineData(v.Digest, v.Size, v.Data); err != nil {
		return record{}, err
	}
	again, err := json.Marshal(v)
	if err != nil || !bytes.Equal(again, b) {
		return record{}, fmt.Errorf("record %s: not in canonical form", v.Digest)
	}
	return record{Type: v.Type, Kind: v.Kind, Name: v.Name, RunID: v.RunID, Digest: v.Digest, Size: v.Size,
		SubjectCount: len(v.Subjects), SubjectsDigest: store.Digest(encodeSubjects(v.Subjects)), Subjects: v.Subjects, Data: v.Data, v1: true}, nil
}

// marshal re-encodes r in the format it was read in.
func (r record) marshal() ([]byte, error) {
	if r.v1 {
		return json.Marshal(recordV1{Type: r.Type, Kind: r.Kind, Name: r.Name, RunID: r.RunID, Subjects: r.Subjects, Digest: r.Digest, Size: r.Size, Data: r.Data})
	}
	return json.Marshal(r)
}

func checkName(digest, name string, size int) error {
	if strings.ContainsAny(name, "\x00\n") || len(name) > store.MaxNameSize {
		return fmt.Errorf("record %s: bad name %q", digest, name)
	}
	if size <= 0 || size > store.MaxEntrySize {
		return fmt.Errorf("record %s: size %d", digest, size)
	}
	return nil
}

func checkInlineData(digest string, size int, data []byte) error {
	if data != nil && (len(data) != size || store.Digest(data) != digest) {
		return fmt.Errorf("record %s: inline data does not match its digest and size", digest)
	}
	return nil
}

// checkFields checks what both records and index lines carry.
func checkFields(kind, digest string, subjects []string) error {
	switch kind {
	case store.KindLink, store.KindLayout, store.KindProvenance, store.KindAttestation, store.KindTrust:
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	if !store.ValidDigest(digest) {
		return fmt.Errorf("digest %q is not sha256:<64 hex>", digest)
	}
	for i, s := range subjects {
		if !store.ValidDigest(s) {
			return fmt.Errorf("%s: subject %q is not sha256:<64 hex>", digest, s)
		}
		if i > 0 && subjects[i-1] >= s {
			return fmt.Errorf("%s: subjects not sorted and unique", digest)
		}
	}
	return nil
}

// inlineSubjects reports whether the record itself lists its subjects.
func (r record) inlineSubjects() bool { return r.Subjects != nil || r.SubjectCount == 0 }

// String names the record's entry in messages.
func (r record) String() string { return fmt.Sprintf("%s %q (%s)", r.Kind, r.Name, r.Digest) }

// entry is the store entry r describes, with subjects (the record's or the
// given list, which the caller checked against r) and data when inline.
func (r record) entry(subjects []string) store.Entry {
	if r.inlineSubjects() {
		subjects = r.Subjects
	}
	if subjects == nil {
		subjects = []string{}
	}
	return store.Entry{Kind: r.Kind, Name: r.Name, RunID: r.RunID, Subjects: subjects, Digest: r.Digest, Data: r.Data}
}

// union returns the sorted union of two sorted subject lists.
func union(a, b []string) []string {
	seen := make(map[string]bool, len(a)+len(b))
	out := make([]string, 0, len(a)+len(b))
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

package tlogstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// recordType names the format of a log entry.
const recordType = "stepseal.dev/store-entry/v1"

// record is one log entry: what the store knows about an entry, in the
// canonical JSON encoding/json gives this struct (fields in this order,
// subjects sorted). Data is inline when the record fits a log entry;
// otherwise it is kept in blobs/ and the record binds it by Digest and Size.
type record struct {
	Type     string   `json:"type"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	RunID    string   `json:"runID,omitempty"`
	Subjects []string `json:"subjects"`
	Digest   string   `json:"digest"`
	Size     int      `json:"size"`
	Data     []byte   `json:"data,omitempty"`
}

// encodeRecord encodes a validated entry; inline reports whether its data is
// in the record.
func encodeRecord(e store.Entry) (b []byte, inline bool, err error) {
	r := record{Type: recordType, Kind: e.Kind, Name: e.Name, RunID: e.RunID, Subjects: e.Subjects, Digest: e.Digest, Size: len(e.Data), Data: e.Data}
	if r.Subjects == nil {
		r.Subjects = []string{}
	}
	if b, err = json.Marshal(r); err != nil {
		return nil, false, err
	}
	if len(b) <= tlog.MaxEntrySize {
		return b, true, nil
	}
	r.Data = nil
	b, err = json.Marshal(r)
	return b, false, err
}

// parseRecord decodes a log entry, refusing anything encodeRecord would not
// have written.
func parseRecord(b []byte) (record, error) {
	var r record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("not a store record: %v", err)
	}
	if dec.More() {
		return r, fmt.Errorf("not a store record: trailing data")
	}
	if r.Type != recordType {
		return r, fmt.Errorf("record type %q, want %q", r.Type, recordType)
	}
	if err := checkFields(r.Kind, r.Digest, r.Subjects); err != nil {
		return r, err
	}
	if strings.ContainsAny(r.Name, "\x00\n") || len(r.Name) > 1024 {
		return r, fmt.Errorf("record %s: bad name %q", r.Digest, r.Name)
	}
	if r.Size <= 0 || r.Size > store.MaxEntrySize {
		return r, fmt.Errorf("record %s: size %d", r.Digest, r.Size)
	}
	if r.Data != nil {
		if len(r.Data) != r.Size || store.Digest(r.Data) != r.Digest {
			return r, fmt.Errorf("record %s: inline data does not match its digest and size", r.Digest)
		}
	}
	again, err := json.Marshal(r)
	if err != nil || !bytes.Equal(again, b) {
		return r, fmt.Errorf("record %s: not in canonical form", r.Digest)
	}
	return r, nil
}

// checkFields checks what both records and index lines carry.
func checkFields(kind, digest string, subjects []string) error {
	switch kind {
	case store.KindLink, store.KindLayout, store.KindProvenance, store.KindAttestation:
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

func (r record) entry() store.Entry {
	subs := r.Subjects
	if subs == nil {
		subs = []string{}
	}
	return store.Entry{Kind: r.Kind, Name: r.Name, RunID: r.RunID, Subjects: subs, Digest: r.Digest, Data: r.Data}
}

// union returns the sorted union of two sorted subject lists.
func union(a, b []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

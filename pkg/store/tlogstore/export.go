package tlogstore

import (
	"fmt"

	"github.com/stepseal/stepseal/pkg/store"
)

// EncodeInlineRecord is the store record (the log entry Put appends) of a
// validated entry whose document and subjects both fit inline in it, for a
// writer that keeps no blobs beside the log (pkg/logserver). An entry that
// does not fit is store.ErrInvalid naming it and the limit.
func EncodeInlineRecord(e store.Entry) ([]byte, error) {
	enc, err := encodeRecord(e)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	if enc.data || enc.subjects != nil {
		return nil, fmt.Errorf("%w: %s %q (%s): %d bytes and %d subjects do not fit one log entry inline", store.ErrInvalid, e.Kind, e.Name, e.Digest, len(e.Data), len(e.Subjects))
	}
	return enc.rec, nil
}

// ParseRecord decodes a log entry written by a Store or by
// EncodeInlineRecord, refusing anything they would not have written
// (store.ErrCorrupt). It returns the entry with its subjects and inline
// data; complete is false when the record binds a subject list kept in a
// blob, which ParseRecord does not read (Subjects is then empty).
func ParseRecord(raw []byte) (e store.Entry, complete bool, err error) {
	r, err := parseRecord(raw)
	if err != nil {
		return store.Entry{}, false, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	return r.entry(nil), r.inlineSubjects(), nil
}

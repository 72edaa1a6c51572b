package tlogstore

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
)

// FuzzParseRecord: log entries are read back from disk. The parser never
// panics, and what it accepts is canonical (re-encodes to the same bytes),
// valid, and has inline data matching its digest.
func FuzzParseRecord(f *testing.F) {
	e := link("build.compile", `{"signed":1}`, subject(2), subject(1))
	if err := store.Validate(&e); err != nil {
		f.Fatal(err)
	}
	rec, _, err := encodeRecord(e)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add(bytes.Replace(rec, []byte(`"link"`), []byte(`"blob"`), 1))
	f.Add([]byte(`{"type":"stepseal.dev/store-entry/v1","kind":"link","name":"","subjects":null,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(r)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted non-canonical record %q", b)
		}
		ent := r.entry()
		if ent.Data != nil {
			if err := store.Validate(&ent); err != nil {
				t.Fatalf("accepted record %q that is not a valid entry: %v", b, err)
			}
		}
	})
}

// FuzzParseIndex: the index file may be torn or damaged. Splitting never
// panics; every line it keeps re-encodes to a line that parses the same.
func FuzzParseIndex(f *testing.F) {
	l := indexLine{I: 7, Digest: subject(1), Kind: store.KindLink, RunID: "r", Subjects: []string{subject(2)}}
	f.Add(append(l.encode(), l.encode()[:9]...))
	f.Add([]byte("{not json\n\n"))
	f.Add([]byte(`{"i":1,"digest":"sha256:` + "00" + `","kind":"link","subjects":[]}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, _ := splitIndex(b)
		if len(lines) > bytes.Count(b, []byte("\n")) {
			t.Fatalf("%d lines from %d newlines", len(lines), bytes.Count(b, []byte("\n")))
		}
		for _, l := range lines {
			enc := l.encode()
			again, err := parseIndexLine(enc[:len(enc)-1])
			if err != nil || !bytes.Equal(again.encode(), enc) {
				t.Fatalf("line %+v does not round-trip: %v", l, err)
			}
		}
	})
}

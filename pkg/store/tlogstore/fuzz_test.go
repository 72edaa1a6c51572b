package tlogstore

import (
	"bytes"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
)

// FuzzParseRecord: log entries are read back from disk. The parser never
// panics, and what it accepts (v2, or v1 of older stores) is canonical
// (re-encodes to the same bytes), valid, and has inline data and subjects
// matching the digests the record binds.
func FuzzParseRecord(f *testing.F) {
	e := link("build.compile", `{"signed":1}`, subject(2), subject(1))
	if err := store.Validate(&e); err != nil {
		f.Fatal(err)
	}
	enc, err := encodeRecord(e)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc.rec)
	big := link("many", `{"signed":2}`)
	for i := 0; i < 1000; i++ {
		big.Subjects = append(big.Subjects, subject(i))
	}
	if err := store.Validate(&big); err != nil {
		f.Fatal(err)
	}
	if enc, err = encodeRecord(big); err != nil || enc.subjects == nil {
		f.Fatalf("1000 subjects: %v, subject list inline", err)
	}
	f.Add(enc.rec)
	f.Add(bytes.Replace(enc.rec, []byte(`"link"`), []byte(`"blob"`), 1))
	f.Add([]byte(`{"type":"stepseal.dev/store-entry/v1","kind":"link","name":"a","subjects":["` + subject(1) + `"],"digest":"` + store.Digest([]byte("x")) + `","size":1,"data":"eA=="}`))
	f.Add([]byte(`{"type":"stepseal.dev/store-entry/v1","kind":"link","name":"","subjects":null,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}`))
	f.Add([]byte(`{"type":"stepseal.dev/store-entry/v2","kind":"link","name":"","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"subjectCount":0,"subjectsDigest":"` + emptySubjects + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		again, err := r.marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted non-canonical record %q", b)
		}
		if r.inlineSubjects() && store.Digest(encodeSubjects(r.entry(nil).Subjects)) != r.SubjectsDigest {
			t.Fatalf("accepted record %q whose inline subjects do not match its subject digest", b)
		}
		ent := r.entry(nil)
		if ent.Data != nil && r.inlineSubjects() {
			if err := store.Validate(&ent); err != nil {
				t.Fatalf("accepted record %q that is not a valid entry: %v", b, err)
			}
		}
	})
}

// FuzzParseSubjects: subject lists are read back from blobs/ (or a proof).
// The parser never panics and accepts only what encodeSubjects writes.
func FuzzParseSubjects(f *testing.F) {
	f.Add(encodeSubjects([]string{subject(1), subject(2)}), 2)
	f.Add(encodeSubjects([]string{subject(2), subject(1)}), 2)
	f.Add([]byte{}, 0)
	f.Add([]byte("sha256:xyz\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		subs, err := parseSubjects(b, n)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeSubjects(subs), b) {
			t.Fatalf("accepted %q, which re-encodes differently", b)
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

package tlogstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// bigLink is the link of a step whose workspace holds n files under
// realistic paths (a vendor tree), and its products' digests as subjects.
func bigLink(t testing.TB, n int) store.Entry {
	t.Helper()
	products := make(map[string]in_toto.HashObj, n)
	subjects := make([]string, 0, n)
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("vendor/github.com/org%03d/module-%04d/internal/pkg%02d/file_%06d.go", i%97, i%1009, i%31, i)
		s := sha256.Sum256([]byte(p))
		h := hex.EncodeToString(s[:])
		products[p] = in_toto.HashObj{"sha256": h}
		subjects = append(subjects, "sha256:"+h)
	}
	l := in_toto.Link{Type: "link", Name: "fetch.copy", Materials: map[string]in_toto.HashObj{}, Products: products,
		ByProducts: map[string]interface{}{}, Command: []string{"/bin/sh", "-c", "cp -R src/. ws/"}, Environment: map[string]interface{}{}}
	data, err := json.Marshal(in_toto.Metablock{Signed: l, Signatures: []in_toto.Signature{{KeyID: "0123abcd", Sig: "00"}}})
	if err != nil {
		t.Fatal(err)
	}
	return store.Entry{Kind: store.KindLink, Name: "fetch.copy.0123abcd.link", RunID: "run-big", Data: data, Subjects: subjects}
}

// A link with 100 000 products (~10 MB, 100 000 subjects) is stored, read
// back, found by a subject and proven.
func TestHundredThousandProducts(t *testing.T) {
	k := testKey(t)
	s := openStore(t, t.TempDir(), k)
	e := bigLink(t, 100_000)
	t.Logf("link of %d bytes, %d subjects", len(e.Data), len(e.Subjects))
	d, err := s.Put(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Fetch(ctx, d)
	if err != nil || !bytes.Equal(got.Data, e.Data) || len(got.Subjects) != 100_000 {
		t.Fatalf("Fetch: %d bytes, %d subjects, %v", len(got.Data), len(got.Subjects), err)
	}
	p, err := s.Prove(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	pe, err := VerifyProof(k.Verifier, p)
	if err != nil || pe.Digest != d || len(pe.Subjects) != 100_000 {
		t.Fatalf("VerifyProof: %d subjects, %v", len(pe.Subjects), err)
	}
}

// A store written by the v1 record format (before subject lists could
// leave the record) still opens, reads, proves and audits; new entries are
// v2 beside the v1 ones.
func TestV1StoreStillReads(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, "testdata/v1store/store", dir)
	skey, err := os.ReadFile("testdata/v1store/log.key")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, k)
	all, err := s.List(ctx, store.Filter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("List: %d entries, %v", len(all), err)
	}
	for _, e := range all {
		if _, err := s.Fetch(ctx, e.Digest); err != nil {
			t.Fatalf("Fetch %s: %v", e.Digest, err)
		}
		p, err := s.Prove(ctx, e.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyProof(k.Verifier, p); err != nil {
			t.Fatal(err)
		}
	}
	big := bigLink(t, 2000)
	if _, err := s.Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := Audit(ctx, dir, tlog.NewClient(filepath.Join(dir, "log"), k.Verifier), cp, func(Audited) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("Audit: %d entries, %v", n, err)
	}
}

// Attack: the subject list of a large link (kept in blobs/, bound by digest
// in the signed leaf) is edited to drop a subject, then deleted. Reads,
// searches, proofs and the audit refuse with ErrBlobMismatch, then
// ErrBlobMissing, both store.ErrCorrupt, naming the entry and the blob. A
// blob that cannot be read is store.ErrUnavailable: no verdict.
func TestSubjectListBlobTampered(t *testing.T) {
	k := testKey(t)
	dir := t.TempDir()
	s := openStore(t, dir, k)
	e := bigLink(t, 3000)
	d, err := s.Put(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	i, _ := s.LogIndex(d)
	raw, err := s.Log().Entry(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseRecord(raw)
	if err != nil || r.inlineSubjects() || r.Data != nil {
		t.Fatalf("a 3000-product link should keep its subjects and data in blobs/: inline subjects %v, inline data %v, %v", r.inlineSubjects(), r.Data != nil, err)
	}
	blob := filepath.Join(dir, "blobs", strings.TrimPrefix(r.SubjectsDigest, "sha256:"))
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	audit := func() error {
		return Audit(ctx, dir, tlog.NewClient(filepath.Join(dir, "log"), k.Verifier), cp, func(Audited) error { return nil })
	}
	for _, c := range []struct {
		name   string
		tamper func()
		want   error
		reason *reject.Reason
	}{
		{"edited", func() { _ = os.WriteFile(blob, b[subjectLine:], 0o644) }, ErrBlobMismatch, reject.ErrMismatch},
		{"deleted", func() { _ = os.Remove(blob) }, ErrBlobMissing, reject.ErrMissing},
		// A directory in its place cannot be read, even by root.
		{"unreadable", func() { _ = os.Mkdir(blob, 0o755) }, store.ErrUnavailable, reject.ErrUnavailable},
	} {
		c.tamper()
		_, ferr := s.Fetch(ctx, d)
		_, gerr := s.Get(ctx, e.Subjects[0])
		_, perr := s.Prove(ctx, d)
		for what, err := range map[string]error{"Fetch": ferr, "Get": gerr, "Prove": perr, "Audit": audit()} {
			if !errors.Is(err, c.want) || errors.Is(err, store.ErrCorrupt) != c.reason.Refused() || !strings.Contains(fmt.Sprint(err), "fetch.copy.0123abcd.link") || !strings.Contains(fmt.Sprint(err), "blobs/"+strings.TrimPrefix(r.SubjectsDigest, "sha256:")) {
				t.Errorf("%s, subject list %s: %v, want %v naming the entry and the blob", what, c.name, err, c.want)
			}
			if !errors.Is(err, c.reason) || errors.Is(err, reject.ErrRefused) != c.reason.Refused() || errors.Is(err, reject.ErrUnableToCheck) == c.reason.Refused() {
				t.Errorf("%s, subject list %s: %v: want reject.%v (refused %v), got refused %v, unable to check %v", what, c.name, err, c.reason,
					c.reason.Refused(), errors.Is(err, reject.ErrRefused), errors.Is(err, reject.ErrUnableToCheck))
			}
		}
	}
	// A proof whose subject list was swapped for another is refused too.
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.Prove(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	p.SubjectList = p.SubjectList[subjectLine:]
	if _, err := VerifyProof(k.Verifier, p); !errors.Is(err, ErrBlobMismatch) {
		t.Fatalf("VerifyProof with a shortened subject list: %v, want ErrBlobMismatch", err)
	}
	p.SubjectList = nil
	if _, err := VerifyProof(k.Verifier, p); !errors.Is(err, ErrBlobMissing) {
		t.Fatalf("VerifyProof without the subject list: %v, want ErrBlobMissing", err)
	}
}

package tlogstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/storetest"
	"github.com/stepseal/stepseal/pkg/tlog"
	"github.com/transparency-dev/tessera/api/layout"
)

var ctx = context.Background()

func testKey(t testing.TB) tlog.Key {
	t.Helper()
	skey, _, err := tlog.GenerateKey("stepseal.test/store")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStore(t testing.TB, dir string, k tlog.Key) *Store {
	t.Helper()
	s, err := Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	return s
}

// keys remembers each test store's key for Reopen.
var keys = map[*Store]tlog.Key{}

func subject(i int) string { return fmt.Sprintf("sha256:%064x", i) }

func link(name, data string, subjects ...string) store.Entry {
	return store.Entry{Kind: store.KindLink, Name: name, RunID: "run-1", Data: []byte(data), Subjects: subjects}
}

// tamperRecord rewrites the bytes of the log entry holding digest in its
// entry bundle, keeping its length so that the bundle still parses.
func tamperRecord(t testing.TB, s *Store, digest string) {
	t.Helper()
	i, err := s.LogIndex(digest)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Log().Dir(), layout.EntriesPathForLogIndex(i, cp.Size))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Log().Entry(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	// "kind":"link" -> "kind":"Link": same length, so the bundle still parses.
	forged := append([]byte{}, rec...)
	k := bytes.Index(forged, []byte(`"kind":"`)) + len(`"kind":"`)
	forged[k] ^= 0x20
	nb := bytes.Replace(b, rec, forged, 1)
	if bytes.Equal(nb, b) {
		t.Fatalf("record of %s not found in %s", digest, p)
	}
	if err := os.WriteFile(p, nb, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) store.Store {
			k := testKey(t)
			s := openStore(t, t.TempDir(), k)
			keys[s] = k
			return s
		},
		Reopen: func(t *testing.T, st store.Store) store.Store {
			s := st.(*Store)
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			return openStore(t, s.Dir(), keys[s])
		},
		Tamper: func(t *testing.T, st store.Store, d string) {
			tamperRecord(t, st.(*Store), d)
		},
	})
}

func TestPutIndexed(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(t))
	d0, i0, err := s.PutIndexed(ctx, link("a.x", "one", subject(1)))
	if err != nil || i0 != 0 {
		t.Fatalf("first PutIndexed: %d, %v", i0, err)
	}
	_, i1, err := s.PutIndexed(ctx, link("b.x", "two", subject(2)))
	if err != nil || i1 != 1 {
		t.Fatalf("second PutIndexed: %d, %v", i1, err)
	}
	// Same data again: same entry, same index, nothing appended.
	d, i, err := s.PutIndexed(ctx, link("a.x", "one", subject(1)))
	if err != nil || d != d0 || i != 0 {
		t.Fatalf("repeated PutIndexed: %s %d, %v; want %s 0", d, i, err, d0)
	}
	// Same data, a new subject: a new record with both subjects.
	_, i, err = s.PutIndexed(ctx, link("a.x", "one", subject(3)))
	if err != nil || i != 2 {
		t.Fatalf("PutIndexed with a new subject: %d, %v; want 2", i, err)
	}
	for _, sub := range []string{subject(1), subject(3)} {
		got, err := s.Get(ctx, sub)
		if err != nil || len(got) != 1 || len(got[0].Subjects) != 2 {
			t.Fatalf("Get(%s) = %+v, %v", sub, got, err)
		}
	}
	if li, err := s.LogIndex(d0); err != nil || li != 2 {
		t.Fatalf("LogIndex = %d, %v; want 2", li, err)
	}
	if cp, _ := s.Log().Checkpoint(ctx); cp.Size != 3 {
		t.Fatalf("log has %d entries, want 3", cp.Size)
	}
}

func TestProof(t *testing.T) {
	k := testKey(t)
	s := openStore(t, t.TempDir(), k)
	d, i, err := s.PutIndexed(ctx, link("a.x", `{"signed":true}`, subject(1)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Prove(ctx, d)
	if err != nil || p.Index != i {
		t.Fatalf("Prove = %+v, %v", p, err)
	}
	// Anyone with the public key alone.
	e, err := VerifyProof(k.Verifier, p)
	if err != nil || e.Digest != d || string(e.Data) != `{"signed":true}` || e.Subjects[0] != subject(1) {
		t.Fatalf("VerifyProof = %+v, %v", e, err)
	}
	forged := p
	forged.Record = bytes.Replace(p.Record, []byte(`"a.x"`), []byte(`"b.x"`), 1)
	if _, err := VerifyProof(k.Verifier, forged); !errors.Is(err, tlog.ErrInclusion) {
		t.Fatalf("VerifyProof of an edited record: %v, want ErrInclusion", err)
	}
	if _, err := VerifyProof(testKey(t).Verifier, p); !errors.Is(err, tlog.ErrBadCheckpoint) {
		t.Fatalf("VerifyProof with another key: %v, want ErrBadCheckpoint", err)
	}
}

func TestLargeEntryInBlob(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(t))
	big := bytes.Repeat([]byte("provenance "), 20000) // 220 kB: larger than a log entry
	d, err := s.Put(ctx, store.Entry{Kind: store.KindProvenance, Name: "run", Data: big, Subjects: []string{subject(1)}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Fetch(ctx, d)
	if err != nil || !bytes.Equal(e.Data, big) {
		t.Fatalf("Fetch of a large entry: %d bytes, %v", len(e.Data), err)
	}
	p := filepath.Join(s.Dir(), "blobs", strings.TrimPrefix(d, "sha256:"))
	if err := os.WriteFile(p, append(big[:len(big)-1], 'X'), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(ctx, d); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Fetch of an edited blob: %v, want ErrCorrupt", err)
	}
}

func TestTamperedRecordNamesLogError(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(t))
	d, err := s.Put(ctx, link("a.x", "one", subject(1)))
	if err != nil {
		t.Fatal(err)
	}
	tamperRecord(t, s, d)
	_, err = s.Fetch(ctx, d)
	if !errors.Is(err, store.ErrCorrupt) || !errors.Is(err, tlog.ErrInclusion) || !strings.Contains(err.Error(), "log entry 0") {
		t.Fatalf("Fetch of a tampered record: %v, want ErrCorrupt and ErrInclusion naming log entry 0", err)
	}
}

// A crash after the log append and before the index line: the entry is in
// the log only. Open adds it back; a retried Put does not append again.
func TestRepairAfterCrashBeforeIndexLine(t *testing.T) {
	k := testKey(t)
	dir := t.TempDir()
	s := openStore(t, dir, k)
	if _, err := s.Put(ctx, link("a.x", "one", subject(1))); err != nil {
		t.Fatal(err)
	}
	e := link("b.x", "two", subject(2))
	if err := store.Validate(&e); err != nil {
		t.Fatal(err)
	}
	enc, err := encodeRecord(e)
	if err != nil {
		t.Fatal(err)
	}
	i, err := s.Log().Append(ctx, enc.rec) // what PutIndexed does before it writes the index line
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, k)
	got, err := s.Fetch(ctx, e.Digest)
	if err != nil || string(got.Data) != "two" {
		t.Fatalf("Fetch after repair: %+v, %v", got, err)
	}
	_, again, err := s.PutIndexed(ctx, link("b.x", "two", subject(2)))
	if err != nil || again != i {
		t.Fatalf("retried Put: index %d, %v; want %d", again, err, i)
	}
	if cp, _ := s.Log().Checkpoint(ctx); cp.Size != 2 {
		t.Fatalf("log has %d entries, want 2 (no duplicate)", cp.Size)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "index"))
	if n := bytes.Count(b, []byte("\n")); n != 2 {
		t.Fatalf("index has %d lines, want 2:\n%s", n, b)
	}
}

func TestRepairDamagedIndex(t *testing.T) {
	k := testKey(t)
	dir := t.TempDir()
	s := openStore(t, dir, k)
	for i := 0; i < 5; i++ {
		if _, err := s.Put(ctx, link(fmt.Sprintf("s%d", i), fmt.Sprintf("data %d", i), subject(i), subject(99))); err != nil {
			t.Fatal(err)
		}
	}
	want, err := s.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "index")
	good, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(good, []byte("\n"))
	for name, damaged := range map[string][]byte{
		"torn last line": append(bytes.Join(lines[:4], nil), lines[4][:10]...),
		"garbage line":   bytes.Join([][]byte{lines[0], []byte("{not json\n"), lines[2], lines[3], lines[4]}, nil),
		"missing":        nil,
		"conflicting":    append(append([]byte{}, good...), bytes.Replace(lines[1], []byte(`"i":1`), []byte(`"i":3`), 1)...),
	} {
		t.Run(name, func(t *testing.T) {
			if damaged == nil {
				os.Remove(path)
			} else if err := os.WriteFile(path, damaged, 0o644); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, dir, k)
			got, err := s.List(ctx, store.Filter{})
			if err != nil || len(got) != len(want) {
				t.Fatalf("List after repair: %d entries, %v; want %d", len(got), err, len(want))
			}
			for i := range got {
				if got[i].Digest != want[i].Digest || got[i].Name != want[i].Name {
					t.Fatalf("entry %d: %+v, want %+v", i, got[i], want[i])
				}
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, good) {
				t.Fatalf("repaired index differs from the original:\n%s\nwant\n%s", b, good)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The log directory replaced by an older copy (truncated) while the index
// names later entries: Open refuses, naming both.
func TestTruncatedLogRefused(t *testing.T) {
	k := testKey(t)
	dir := t.TempDir()
	s := openStore(t, dir, k)
	if _, err := s.Put(ctx, link("a", "one", subject(1))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(t.TempDir(), "log")
	copyDir(t, filepath.Join(dir, "log"), saved)
	s = openStore(t, dir, k)
	if _, err := s.Put(ctx, link("b", "two", subject(2))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "log"))
	copyDir(t, saved, filepath.Join(dir, "log"))
	_, err := Open(ctx, dir, k, nil)
	if !errors.Is(err, store.ErrCorrupt) || !errors.Is(err, tlog.ErrRollback) || !strings.Contains(err.Error(), "log entry 1") {
		t.Fatalf("Open over a truncated log: %v, want ErrCorrupt+ErrRollback naming entry 1", err)
	}
}

func TestOneStorePerDirectory(t *testing.T) {
	k := testKey(t)
	dir := t.TempDir()
	openStore(t, dir, k)
	if s, err := Open(ctx, dir, k, nil); err == nil {
		s.Close(ctx)
		t.Fatal("a second Store opened the same directory")
	}
}

func TestRebuild(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(t))
	for i := 0; i < 20; i++ {
		if _, err := s.Put(ctx, link(fmt.Sprintf("s%d", i), fmt.Sprintf("d%d", i%7), subject(i%3))); err != nil {
			t.Fatal(err)
		}
	}
	before := indexState(s)
	if err := s.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if after := indexState(s); after != before {
		t.Fatalf("index rebuilt from the log differs:\n%s\nwas\n%s", after, before)
	}
}

// indexState renders the in-memory index for comparison.
func indexState(s *Store) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var b strings.Builder
	for _, l := range sortedLines(s.byDigest) {
		b.Write(l.encode())
	}
	for _, sub := range sortedKeys(s.bySubject) {
		fmt.Fprintf(&b, "%s:", sub)
		for _, d := range sortedKeys(s.bySubject[sub]) {
			fmt.Fprintf(&b, " %s", d)
		}
		b.WriteString("\n")
	}
	return b.String()
}

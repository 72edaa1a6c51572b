package logserver

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// mitm serves the real server's answers through edit, which may change
// search answers; everything else passes unchanged.
type mitm struct {
	real http.Handler
	mu   sync.Mutex
	edit func(*SearchAnswer)
}

func (m *mitm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	edit := m.edit
	m.mu.Unlock()
	if r.URL.Path != "/v1/search" || edit == nil {
		m.real.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	m.real.ServeHTTP(rec, r)
	var a SearchAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	edit(&a)
	writeJSON(w, http.StatusOK, a)
}

func (m *mitm) set(edit func(*SearchAnswer)) {
	m.mu.Lock()
	m.edit = edit
	m.mu.Unlock()
}

func TestManInTheMiddleOnSearch(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 6 {
		if _, err := f.client.Add(ctx, provenance(t, f.signer, "run-1", docName(i), "popular")); err != nil {
			t.Fatal(err)
		}
	}
	oldCP := f.srv.Checkpoint().Raw // 6 entries
	for i := 6; i < 10; i++ {
		if _, err := f.client.Add(ctx, provenance(t, f.signer, "run-2", docName(i), "popular")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.client.Add(ctx, provenance(t, f.signer, "run-3", "lonely")); err != nil {
		t.Fatal(err)
	}
	m := &mitm{real: f.srv.Handler()}
	proxy := httptest.NewServer(m)
	defer proxy.Close()
	newClient := func() *Client {
		c, err := NewClient(proxy.URL, f.key.Verifier, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	popular := Query{Subject: subject("popular")}
	for _, c := range []struct {
		name string
		from uint64
		edit func(*SearchAnswer)
		want error
	}{
		{"altered record", 0, func(a *SearchAnswer) {
			a.Results[1].Record = bytes.Replace(a.Results[1].Record, []byte("run-1"), []byte("run-X"), 1)
		}, tlog.ErrInclusion},
		{"swapped proofs", 0, func(a *SearchAnswer) {
			a.Results[0].Hashes, a.Results[1].Hashes = a.Results[1].Hashes, a.Results[0].Hashes
		}, tlog.ErrInclusion},
		{"swapped indexes", 0, func(a *SearchAnswer) {
			a.Results[0].Index, a.Results[1].Index = a.Results[1].Index, a.Results[0].Index
		}, nil},
		{"old checkpoint for a later page", 8, func(a *SearchAnswer) {
			a.Checkpoint = oldCP
		}, tlog.ErrRollback},
		{"checkpoint of another key", 0, func(a *SearchAnswer) {
			a.Checkpoint = bytes.Replace(a.Checkpoint, []byte("— "), []byte("— x"), 1)
		}, tlog.ErrBadCheckpoint},
		{"result outside the query", 0, func(a *SearchAnswer) {
			// a genuine entry with a valid proof, but not about the subject asked
			other, _ := f.srv.Search(ctx, Query{Subject: subject("lonely")}, 0, 1)
			a.Results = other.Results
		}, ErrAnswer},
		{"more results than asked", 0, func(a *SearchAnswer) {
			for len(a.Results) <= DefaultLimit {
				a.Results = append(a.Results, a.Results...)
			}
		}, ErrAnswer},
	} {
		m.set(c.edit)
		_, err := newClient().Search(ctx, popular, c.from, 0)
		if c.want == nil {
			if err == nil {
				t.Errorf("%s: accepted", c.name)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}

	// A dropped result verifies page by page; only the audit finds it.
	var dropped Result
	m.set(func(a *SearchAnswer) {
		if len(a.Results) > 3 {
			dropped = a.Results[3]
			a.Results = append(a.Results[:3], a.Results[4:]...)
		}
	})
	c := newClient()
	n := 0
	if _, err := c.SearchAll(ctx, popular, 0, 0, func(VerifiedResult) error { n++; return nil }); err != nil || n != 9 {
		t.Fatalf("dropped result: %d results, %v", n, err)
	}
	_, err := Audit(ctx, c, filepath.Join(t.TempDir(), "audit.db"), []Query{popular})
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "log entry 3 ") {
		t.Fatalf("audit of a dropped result (%d): %v", dropped.Index, err)
	}
}

func TestIndexRowsDeletedOrInjected(t *testing.T) {
	f := newFixture(t, nil)
	docA := provenance(t, f.signer, "run-1", "image-a")
	docB := provenance(t, f.signer, "run-1", "image-b")
	for _, d := range [][]byte{docA, docB} {
		if _, err := f.client.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	db := f.srv.Index().db
	put := func(bucket, k, v []byte) {
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, v) }); err != nil {
			t.Fatal(err)
		}
	}
	// Deleted: the operator drops image-b's subject row; search misses it
	// silently, the audit names the entry.
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSubject).Delete(append(digestKey(subject("image-b")), u64(1)...))
	}); err != nil {
		t.Fatal(err)
	}
	if n := searchCount(t, f.client, Query{Subject: subject("image-b")}); n != 0 {
		t.Fatalf("%d results after the row was deleted", n)
	}
	_, err := Audit(ctx, f.client, filepath.Join(t.TempDir(), "audit.db"), nil)
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), store.Digest(docB)) || !strings.Contains(err.Error(), "log entry 1 ") {
		t.Fatalf("audit after a deleted row: %v", err)
	}

	// Injected: a digest row pointing at another document's entry.
	put(bucketDigest, digestKey(store.Digest([]byte("forged"))), u64(0))
	_, err = f.srv.Entry(ctx, store.Digest([]byte("forged")))
	if !errors.Is(err, ErrIndexCorrupt) || !strings.Contains(err.Error(), store.Digest(docA)) || !strings.Contains(err.Error(), store.Digest([]byte("forged"))) {
		t.Fatalf("Entry through an injected row: %v", err)
	}
	// Injected: a subject row that points at an entry not about it.
	put(bucketSubject, append(digestKey(subject("victim")), u64(0)...), nil)
	_, err = f.srv.Search(ctx, Query{Subject: subject("victim")}, 0, 10)
	if !errors.Is(err, ErrIndexCorrupt) || !strings.Contains(err.Error(), "log entry 0") || !strings.Contains(err.Error(), subject("victim")) || !strings.Contains(err.Error(), store.Digest(docA)) {
		t.Fatalf("Search through an injected row: %v", err)
	}
	// The server refuses to answer; its client gets no verdict, and the
	// server's message naming the row.
	if _, err := f.client.Search(ctx, Query{Subject: subject("victim")}, 0, 10); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "index row does not match the log") {
		t.Fatalf("client search through an injected row: %v", err)
	}
	if _, err := f.client.Get(ctx, store.Digest([]byte("forged"))); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), store.Digest(docA)) {
		t.Fatalf("client get through an injected row: %v", err)
	}
}

// TestCatchUpFromWatermark: an index behind the log (a crash between the
// append and the index commit) catches up on Open; each leaf is indexed
// once.
func TestCatchUpFromWatermark(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 5 {
		if _, err := f.client.Add(ctx, provenance(t, f.signer, "run-1", docName(i), "popular")); err != nil {
			t.Fatal(err)
		}
	}
	// Roll the watermark back to 2 and drop the rows of entries 2..4, as if
	// the process died before committing them.
	db := f.srv.Index().db
	if err := db.Update(func(tx *bolt.Tx) error {
		for i := uint64(2); i < 5; i++ {
			row, _ := decodeRow(i, tx.Bucket(bucketEntry).Get(u64(i)))
			tx.Bucket(bucketDigest).Delete(digestKey(row.Digest))
			tx.Bucket(bucketEntry).Delete(u64(i))
			tx.Bucket(bucketSubject).Delete(append(digestKey(subject("popular")), u64(i)...))
			tx.Bucket(bucketSubject).Delete(append(digestKey(subject(docName(int(i)))), u64(i)...))
			tx.Bucket(bucketKind).Delete(append([]byte(store.KindProvenance+"\x00"), u64(i)...))
			tx.Bucket(bucketRun).Delete(append([]byte("run-1\x00"), u64(i)...))
		}
		return tx.Bucket(bucketMeta).Put(keyWatermark, binary.BigEndian.AppendUint64(nil, 2))
	}); err != nil {
		t.Fatal(err)
	}
	f.stop()
	f.start(t, nil)
	if w, _ := f.srv.Index().Watermark(); w != 5 {
		t.Fatalf("watermark %d after catch-up, want 5", w)
	}
	if n := searchCount(t, f.client, Query{Subject: subject("popular")}); n != 5 {
		t.Fatalf("%d results after catch-up", n)
	}
	v, err := f.client.Add(ctx, provenance(t, f.signer, "run-1", docName(3), "popular"))
	if err != nil || v.Index != 3 || v.Created {
		t.Fatalf("re-add after catch-up: index %d created %v %v", v.Index, v.Created, err)
	}
	if rep, err := Audit(ctx, f.client, filepath.Join(t.TempDir(), "audit.db"), nil); err != nil || len(rep.Aliases) != 0 {
		t.Fatalf("audit: %+v %v", rep, err)
	}
}

// TestPaginationWhileAppending: a popular subject (a shared base image) of
// 2n entries is paged through by its log-index cursor, 37 at a time, while
// 32 writers append the second n: no entry twice, none skipped, in log
// order. STEPSEAL_PAGINATION_ENTRIES sets 2n (default 1 200; 10 000 run for
// the README).
func TestPaginationWhileAppending(t *testing.T) {
	n := 600
	if s := os.Getenv("STEPSEAL_PAGINATION_ENTRIES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2 {
			t.Fatalf("STEPSEAL_PAGINATION_ENTRIES=%q", s)
		}
		n = v / 2
	} else if testing.Short() {
		n = 200
	}
	f := newFixture(t, nil)
	add := func(from, to int) {
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, _ := NewClient(f.http.URL, f.key.Verifier, nil)
				for i := from + w; i < to; i += 32 {
					if _, err := c.Add(ctx, provenance(t, f.signer, "run", docName(i), "base-image")); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	add(0, n)
	done := make(chan struct{})
	go func() { defer close(done); add(n, 2*n) }()
	seen := map[uint64]bool{}
	var last uint64
	from := uint64(0)
	pages := 0
	q := Query{Subject: subject("base-image")}
	for {
		p, err := f.client.Search(ctx, q, from, 37)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Results {
			if seen[r.Index] || (len(seen) > 0 && r.Index <= last) {
				t.Fatalf("log entry %d twice or out of order", r.Index)
			}
			seen[r.Index], last = true, r.Index
		}
		from = p.Next
		if !p.More {
			select {
			case <-done:
				if p2, err := f.client.Search(ctx, q, from, 37); err != nil || len(p2.Results) != 0 {
					// entries appended after the page: keep going
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
			default:
				continue
			}
			break
		}
	}
	if len(seen) != 2*n {
		t.Fatalf("%d distinct results over %d pages, want %d", len(seen), pages, 2*n)
	}
	t.Logf("%d entries of one subject over %d search requests while appending, none twice or skipped", len(seen), pages)
	keys := sortedKeys(seen)
	if keys[0] != 0 || keys[len(keys)-1] != uint64(2*n-1) {
		t.Fatalf("results span %d..%d", keys[0], keys[len(keys)-1])
	}
}

// TestWrongOffset: an index row whose leaf offset is altered is refused by
// the server (the leaf read there does not verify), not answered.
func TestWrongOffset(t *testing.T) {
	f := newFixture(t, nil)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 300; i += 16 {
				if _, err := f.client.Add(ctx, provenance(t, f.signer, "run", docName(i), "pop")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := searchCount(t, f.client, Query{Subject: subject("pop")}); n != 300 {
		t.Fatalf("%d results", n)
	}
	db := f.srv.Index().db
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntry)
		row, err := decodeRow(5, b.Get(u64(5)))
		if err != nil {
			return err
		}
		row.Offset += 7
		return b.Put(u64(5), encodeRow(row))
	}); err != nil {
		t.Fatal(err)
	}
	_, err := f.srv.Search(ctx, Query{Subject: subject("pop")}, 0, 10)
	if !errors.Is(err, ErrIndexCorrupt) {
		t.Fatalf("search through a wrong offset: %v", err)
	}
}

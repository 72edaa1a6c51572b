package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/store"
)

// Backend describes the store under test.
type Backend struct {
	// New returns a fresh, empty store.
	New func(t *testing.T) store.Store
	// Reopen, if set, returns a new handle on the same storage as s (a
	// restart); entries must survive it.
	Reopen func(t *testing.T, s store.Store) store.Store
	// Tamper, if set, changes the stored bytes of the entry with digest d
	// behind the store's back; reads must then fail with store.ErrCorrupt.
	Tamper func(t *testing.T, s store.Store, d string)
	// Edit, if set, changes what the store keeps about the entry with
	// digest d behind the store's back, as what (one of Edits) says: a
	// database row, an index line. Fetch of d, Get of the entry's first
	// subject and List must then fail with store.ErrCorrupt.
	Edit func(t *testing.T, s store.Store, d string, what Edit)
	// Edits are the edits Edit makes (TamperEditsRow for every one).
	Edits []Edit
	// Document, if set, turns an entry of the suite (made-up bytes) into
	// one the backend accepts and will return: for a store that derives
	// entries from signed documents, a document signed by a key it allows
	// that names e's subjects and run, with e's kind, and the name the
	// backend will give it. Equal inputs must give equal outputs. The
	// suite stores and expects what it returns.
	Document func(t *testing.T, e store.Entry) store.Entry
}

// doc is e as the backend stores it (Backend.Document).
func (b Backend) doc(t *testing.T, e store.Entry) store.Entry {
	t.Helper()
	if b.Document == nil {
		return e
	}
	return b.Document(t, e)
}

// Edit names one change behind a store's back (Backend.Edit).
type Edit string

// Edits a backend may support.
const (
	// EditData changes the document's bytes.
	EditData Edit = "data"
	// EditName, EditKind and EditRunID change the entry's name, kind
	// (to another valid kind) and run ID.
	EditName  Edit = "name"
	EditKind  Edit = "kind"
	EditRunID Edit = "run"
	// EditDropSubject removes the entry's last subject.
	EditDropSubject Edit = "drop-subject"
	// EditAddSubject adds subject EditedSubject to the entry.
	EditAddSubject Edit = "add-subject"
	// EditIndex points the entry at the log record of another entry.
	EditIndex Edit = "log-index"
)

// EditedSubject is the subject EditAddSubject adds.
var EditedSubject = subject(77)

// TamperEditsRow lists every Edit.
var TamperEditsRow = []Edit{EditData, EditName, EditKind, EditRunID, EditDropSubject, EditAddSubject, EditIndex}

func subject(i int) string { return fmt.Sprintf("sha256:%064x", i) }

func entry(kind, name, run string, data string, subjects ...string) store.Entry {
	return store.Entry{Kind: kind, Name: name, RunID: run, Data: []byte(data), Subjects: subjects}
}

// Run runs the conformance suite.
func Run(t *testing.T, b Backend) {
	ctx := context.Background()

	t.Run("PutGetFetch", func(t *testing.T) {
		s := b.New(t)
		want := b.doc(t, entry(store.KindLink, "build.compile", "run-1", `{"signed":1}`, subject(1), subject(2)))
		d, err := s.Put(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		if d != store.Digest(want.Data) {
			t.Fatalf("Put returned digest %s, want the sha256 of the data", d)
		}
		for _, sub := range []string{subject(1), subject(2)} {
			got, err := s.Get(ctx, sub)
			if err != nil {
				t.Fatalf("Get(%s): %v", sub, err)
			}
			if len(got) != 1 || string(got[0].Data) != string(want.Data) || got[0].Name != want.Name || got[0].Kind != store.KindLink || got[0].RunID != "run-1" {
				t.Fatalf("Get(%s) = %+v", sub, got)
			}
		}
		e, err := s.Fetch(ctx, d)
		if err != nil || string(e.Data) != string(want.Data) {
			t.Fatalf("Fetch = %+v, %v", e, err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := b.New(t)
		_, err := s.Get(ctx, subject(9))
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get of unknown subject: %v, want ErrNotFound", err)
		}
		rejecttest.Is(t, "Get of unknown subject", err, reject.ErrMissing)
		_, err = s.Fetch(ctx, subject(9))
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Fetch of unknown digest: %v, want ErrNotFound", err)
		}
		rejecttest.Is(t, "Fetch of unknown digest", err, reject.ErrMissing)
	})

	t.Run("Idempotent", func(t *testing.T) {
		s := b.New(t)
		e := b.doc(t, entry(store.KindLink, "a.b", "r", "same", subject(1)))
		d1, err := s.Put(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := s.Put(ctx, e)
		if err != nil || d1 != d2 {
			t.Fatalf("second Put: %s, %v; first %s", d2, err, d1)
		}
		all, err := s.List(ctx, store.Filter{})
		if err != nil || len(all) != 1 {
			t.Fatalf("List after two identical Puts: %d entries, %v; want exactly 1", len(all), err)
		}
		got, _ := s.Get(ctx, subject(1))
		if len(got) != 1 {
			t.Fatalf("Get after two identical Puts: %d entries, want 1", len(got))
		}
	})

	t.Run("ListFilter", func(t *testing.T) {
		s := b.New(t)
		mustPut(t, s, b.doc(t, entry(store.KindLink, "a.x", "r1", "1", subject(1))))
		mustPut(t, s, b.doc(t, entry(store.KindLink, "b.x", "r2", "2", subject(2))))
		mustPut(t, s, b.doc(t, entry(store.KindProvenance, "run", "r1", "3", subject(3))))
		for _, c := range []struct {
			f    store.Filter
			want int
		}{
			{store.Filter{}, 3},
			{store.Filter{Kind: store.KindLink}, 2},
			{store.Filter{RunID: "r1"}, 2},
			{store.Filter{Kind: store.KindLink, RunID: "r1"}, 1},
			{store.Filter{Subject: subject(3)}, 1},
			{store.Filter{RunID: "none"}, 0},
		} {
			got, err := s.List(ctx, c.f)
			if err != nil || len(got) != c.want {
				t.Errorf("List(%+v) = %d entries, %v; want %d", c.f, len(got), err, c.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i-1].Digest >= got[i].Digest {
					t.Errorf("List(%+v) not ordered by digest", c.f)
				}
			}
		}
	})

	t.Run("RejectsBadInput", func(t *testing.T) {
		s := b.New(t)
		for name, e := range map[string]store.Entry{
			"empty data":   entry(store.KindLink, "a", "", ""),
			"unknown kind": entry("blob", "a", "", "x"),
			"bad subject":  entry(store.KindLink, "a", "", "x", "md5:abc"),
			"wrong digest": {Kind: store.KindLink, Name: "a", Data: []byte("x"), Digest: subject(1)},
		} {
			_, err := s.Put(ctx, e)
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Put(%s): %v, want ErrInvalid", name, err)
			}
			rejecttest.Is(t, "Put("+name+")", err, reject.ErrMalformed)
		}
		if all, _ := s.List(ctx, store.Filter{}); len(all) != 0 {
			t.Errorf("rejected Puts left %d entries behind", len(all))
		}
		_, err := s.Get(ctx, "sha256:xyz")
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Get(malformed digest): %v, want ErrInvalid", err)
		}
		rejecttest.Is(t, "Get(malformed digest)", err, reject.ErrMalformed)
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := b.New(t)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		var es []store.Entry
		for i := 0; i < 16; i++ {
			data := fmt.Sprintf("entry-%d", i)
			es = append(es, b.doc(t, entry(store.KindLink, data, "r", data, subject(i), subject(100))))
		}
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				// Half the writers store the same entry: still one entry.
				if _, err := s.Put(ctx, es[i%16]); err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, subject(100))
		if err != nil || len(got) != 16 {
			t.Fatalf("Get(shared subject) = %d entries, %v; want 16", len(got), err)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := b.New(t)
		c, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Put(c, b.doc(t, entry(store.KindLink, "a", "", "x", subject(1)))); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put with canceled context: %v", err)
		}
	})

	if b.Reopen != nil {
		t.Run("Durable", func(t *testing.T) {
			s := b.New(t)
			want := b.doc(t, entry(store.KindLayout, "root.layout", "", "layout", subject(7)))
			d := mustPut(t, s, want)
			s2 := b.Reopen(t, s)
			e, err := s2.Fetch(ctx, d)
			if err != nil || string(e.Data) != string(want.Data) {
				t.Fatalf("after reopen: %+v, %v", e, err)
			}
		})
	}

	if b.Tamper != nil {
		t.Run("TamperEvident", func(t *testing.T) {
			s := b.New(t)
			d := mustPut(t, s, b.doc(t, entry(store.KindLink, "a.b", "", "original", subject(5))))
			b.Tamper(t, s, d)
			_, err := s.Fetch(ctx, d)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Fetch of tampered entry: %v, want ErrCorrupt", err)
			}
			rejecttest.Is(t, "Fetch of tampered entry", err, reject.ErrMismatch)
			_, err = s.Get(ctx, subject(5))
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Get of tampered entry: %v, want ErrCorrupt", err)
			}
			rejecttest.Is(t, "Get of tampered entry", err, reject.ErrMismatch)
		})
	}

	if b.Edit != nil {
		t.Run("TamperEdits", func(t *testing.T) { runEdits(t, b) })
	}
}

// runEdits is the TamperEdits case: each edit of one entry (subjects 5 and
// 6, next to another entry) makes every read that returns it fail.
func runEdits(t *testing.T, b Backend) {
	ctx := context.Background()
	for _, what := range b.Edits {
		t.Run(string(what), func(t *testing.T) {
			s := b.New(t)
			d := mustPut(t, s, b.doc(t, entry(store.KindLink, "a.b", "run-1", "original", subject(5), subject(6))))
			mustPut(t, s, b.doc(t, entry(store.KindLink, "c.d", "run-1", "other", subject(8))))
			b.Edit(t, s, d, what)
			_, err := s.Fetch(ctx, d)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Fetch after edit %s: %v, want ErrCorrupt", what, err)
			}
			rejecttest.Is(t, "Fetch after edit "+string(what), err, reject.ErrMismatch)
			if _, err := s.Get(ctx, subject(5)); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Get after edit %s: %v, want ErrCorrupt", what, err)
			}
			if what == EditAddSubject {
				if _, err := s.Get(ctx, EditedSubject); !errors.Is(err, store.ErrCorrupt) {
					t.Fatalf("Get(added subject) after edit %s: %v, want ErrCorrupt", what, err)
				}
			}
			if _, err := s.List(ctx, store.Filter{}); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("List after edit %s: %v, want ErrCorrupt", what, err)
			}
		})
	}
}

func mustPut(t *testing.T, s store.Store, e store.Entry) string {
	t.Helper()
	d, err := s.Put(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

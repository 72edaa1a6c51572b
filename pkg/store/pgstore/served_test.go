package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/storetest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// servedLog is a `stepseal log serve` server on loopback (the package's
// server, over real HTTP), allowing one writer key; stop and start it to
// take it away and bring it back on the same address.
type servedLog struct {
	dir    string
	key    tlog.Key
	signer signing.Signer
	addr   string
	srv    *logserver.Server
	hs     *http.Server
}

func newServedLog(t testing.TB) *servedLog {
	t.Helper()
	return newServedLogWith(t, signingtest.SignerOf(t, signing.ED25519))
}

func (l *servedLog) start(t testing.TB) {
	t.Helper()
	srv, err := logserver.Open(context.Background(), l.dir, l.key, logserver.Options{Keys: logserver.Keys{signingtest.Verifier(t, l.signer)}})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l.addr, l.srv = ln.Addr().String(), srv
	l.hs = &http.Server{Handler: srv.Handler()}
	go func() { _ = l.hs.Serve(ln) }()
}

func (l *servedLog) stop() {
	if l.srv == nil {
		return
	}
	_ = l.hs.Close()
	l.srv.Close(context.Background())
	l.srv = nil
}

func (l *servedLog) client(t testing.TB) *logserver.Client {
	t.Helper()
	c, err := logserver.NewClient("http://"+l.addr+"/", l.key.Verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// documents makes signed documents of suite entries (storetest's
// Backend.Document) with the served log's writer key: a link of step
// e.Name with a product per subject, a SLSA provenance statement, or a
// layout; each carries e.Data so that distinct entries are distinct
// documents, and equal entries give the same bytes.
type documents struct {
	signer signing.Signer
	mu     sync.Mutex
	made   map[string]store.Entry
}

func (d *documents) doc(t *testing.T, e store.Entry) store.Entry {
	t.Helper()
	k := fmt.Sprint(e.Kind, "\x00", e.Name, "\x00", e.RunID, "\x00", string(e.Data), "\x00", e.Subjects)
	d.mu.Lock()
	defer d.mu.Unlock()
	if got, ok := d.made[k]; ok {
		return got
	}
	ctx := context.Background()
	keyID, err := d.signer.KeyID()
	if err != nil {
		t.Fatal(err)
	}
	out := e
	switch e.Kind {
	case store.KindLink:
		products := map[string]in_toto.HashObj{}
		for i, s := range e.Subjects {
			products[fmt.Sprintf("out-%d", i)] = in_toto.HashObj{"sha256": strings.TrimPrefix(s, "sha256:")}
		}
		env := map[string]interface{}{}
		if e.RunID != "" {
			env[attest.EnvRunID] = e.RunID
		}
		mb, err := attest.SignLink(ctx, in_toto.Link{Type: "link", Name: e.Name, Materials: map[string]in_toto.HashObj{}, Products: products,
			ByProducts: map[string]interface{}{"data": string(e.Data)}, Command: []string{"true"}, Environment: env}, d.signer)
		if err != nil {
			t.Fatal(err)
		}
		if out.Data, err = json.Marshal(mb); err != nil {
			t.Fatal(err)
		}
		out.Name = seal.LinkName(e.Name, keyID)
	case store.KindProvenance, store.KindAttestation:
		type subj struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		}
		ss := []subj{}
		for i, s := range e.Subjects {
			ss = append(ss, subj{Name: fmt.Sprintf("out-%d", i), Digest: map[string]string{"sha256": strings.TrimPrefix(s, "sha256:")}})
		}
		pt := "https://example.com/attestation/v1"
		if e.Kind == store.KindProvenance {
			pt = "https://slsa.dev/provenance/v1"
		}
		payload, err := json.Marshal(map[string]any{"_type": "https://in-toto.io/Statement/v1", "subject": ss, "predicateType": pt,
			"predicate": map[string]any{"data": string(e.Data), "runDetails": map[string]any{"metadata": map[string]any{"invocationId": e.RunID}}}})
		if err != nil {
			t.Fatal(err)
		}
		env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, payload, d.signer)
		if err != nil {
			t.Fatal(err)
		}
		if out.Data, err = json.Marshal(env); err != nil {
			t.Fatal(err)
		}
	case store.KindLayout:
		mb := &in_toto.Metablock{Signed: in_toto.Layout{Type: "layout", Expires: "2099-01-01T00:00:00Z", Readme: string(e.Data),
			Keys: map[string]in_toto.Key{}, Steps: []in_toto.Step{}, Inspect: []in_toto.Inspection{}}}
		if err := signing.SignMetablock(ctx, mb, d.signer); err != nil {
			t.Fatal(err)
		}
		if out.Data, err = json.Marshal(mb); err != nil {
			t.Fatal(err)
		}
		out.Name, out.Subjects = "root.layout", nil // a layout names no subject
	default:
		t.Fatalf("no document for kind %s", e.Kind)
	}
	if d.made == nil {
		d.made = map[string]store.Entry{}
	}
	d.made[k] = out
	return out
}

// servedFixture is one database and one served log.
type servedFixture struct {
	dsn  string
	db   string
	log  *servedLog
	docs *documents
}

func newServedFixture(t testing.TB) *servedFixture {
	t.Helper()
	f := &servedFixture{dsn: server(t).NewDatabase(t), log: newServedLog(t)}
	f.db = dbName(f.dsn)
	f.docs = &documents{signer: f.log.signer}
	return f
}

func (f *servedFixture) open(t testing.TB, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.OpenServed(context.Background(), f.dsn, f.log.client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// TestServedConformance runs the conformance suite on the store over a
// served log, with every edit of a row behind the store's back.
func TestServedConformance(t *testing.T) {
	s := server(t)
	fixtures := map[store.Store]*servedFixture{}
	var mu sync.Mutex
	fixture := func(st store.Store) *servedFixture {
		mu.Lock()
		defer mu.Unlock()
		return fixtures[st]
	}
	var docs *documents // one writer key for the whole suite: Document runs before New
	signer := signingtest.SignerOf(t, signing.ED25519)
	docs = &documents{signer: signer}
	sql := func(t *testing.T, st store.Store, q string) {
		t.Helper()
		if err := s.Exec(context.Background(), fixture(st).db, q); err != nil {
			t.Fatal(err)
		}
	}
	where := func(d string) string { return fmt.Sprintf(" WHERE digest = '\\x%s'", strings.TrimPrefix(d, "sha256:")) }
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) store.Store {
			f := &servedFixture{dsn: s.NewDatabase(t), log: newServedLogWith(t, signer), docs: docs}
			f.db = dbName(f.dsn)
			st := f.open(t, nil)
			mu.Lock()
			fixtures[st] = f
			mu.Unlock()
			return st
		},
		Reopen: func(t *testing.T, st store.Store) store.Store {
			f := fixture(st)
			_ = st.(*pgstore.Store).Close(context.Background())
			f.log.stop()
			f.log.start(t)
			return f.open(t, nil)
		},
		Document: docs.doc,
		Tamper: func(t *testing.T, st store.Store, d string) {
			sql(t, st, `UPDATE stepseal_entries SET data = 'tampered'::bytea`+where(d))
		},
		Edits: storetest.TamperEditsRow,
		Edit: func(t *testing.T, st store.Store, d string, what storetest.Edit) {
			switch what {
			case storetest.EditData:
				sql(t, st, `UPDATE stepseal_entries SET data = data || ' '::bytea`+where(d))
			case storetest.EditName:
				sql(t, st, `UPDATE stepseal_entries SET name = 'other.step'`+where(d))
			case storetest.EditKind:
				sql(t, st, `UPDATE stepseal_entries SET kind = 'provenance'`+where(d))
			case storetest.EditRunID:
				sql(t, st, `UPDATE stepseal_entries SET run_id = 'run-2'`+where(d))
			case storetest.EditDropSubject:
				sql(t, st, `DELETE FROM stepseal_subjects WHERE (subject, digest) = (SELECT subject, digest FROM stepseal_subjects`+where(d)+` ORDER BY subject DESC LIMIT 1)`)
			case storetest.EditAddSubject:
				sql(t, st, fmt.Sprintf(`INSERT INTO stepseal_subjects (subject, digest) VALUES ('\x%s', '\x%s')`,
					strings.TrimPrefix(storetest.EditedSubject, "sha256:"), strings.TrimPrefix(d, "sha256:")))
			case storetest.EditIndex:
				sql(t, st, `UPDATE stepseal_entries SET log_index = (SELECT max(log_index) FROM stepseal_entries)`+where(d))
			default:
				t.Fatalf("edit %s not supported", what)
			}
		},
	})
}

// newServedLogWith is newServedLog with the writer key signer.
func newServedLogWith(t testing.TB, signer signing.Signer) *servedLog {
	t.Helper()
	skey, _, err := tlog.GenerateKey("log.pgstore.test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &servedLog{dir: filepath.Join(t.TempDir(), "served"), key: key, signer: signer}
	l.start(t)
	t.Cleanup(l.stop)
	return l
}

// TestServedDerived: what a writer declares must be what the served log
// derives from the document (ErrNotDerived otherwise, and nothing stays
// behind); subjects a document names are unioned into its one row and log
// entry whichever writer declares which; a document the log does not allow
// is refused with the log's reason.
func TestServedDerived(t *testing.T) {
	ctx := context.Background()
	f := newServedFixture(t)
	st := f.open(t, nil)
	base := f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: "run-1", Data: []byte("b"), Subjects: []string{subject(1), subject(2)}})

	for name, c := range map[string]struct {
		edit func(e *store.Entry)
		want string
	}{
		"foreign subject": {func(e *store.Entry) { e.Subjects = []string{subject(1), subject(9)} }, "subject " + subject(9) + " (the document does not name it)"},
		"other kind":      {func(e *store.Entry) { e.Kind = store.KindAttestation }, `kind "attestation" (log: "link")`},
		"other run":       {func(e *store.Entry) { e.RunID = "run-2" }, `run "run-2" (log: "run-1")`},
		"other step":      {func(e *store.Entry) { e.Name = "test." + strings.SplitN(e.Name, ".", 2)[1] }, `name "test.`},
	} {
		e := base
		c.edit(&e)
		_, err := st.Put(ctx, e)
		if !errors.Is(err, pgstore.ErrNotDerived) || !strings.Contains(fmt.Sprint(err), c.want) || !strings.Contains(fmt.Sprint(err), store.Digest(base.Data)) {
			t.Errorf("%s: %v, want ErrNotDerived naming %q and the document", name, err, c.want)
		}
		rejecttest.Is(t, name, err, reject.ErrMismatch)
		if all, err := st.List(ctx, store.Filter{}); err != nil || len(all) != 0 {
			t.Errorf("%s: %d entries after the refusal, %v; want none", name, len(all), err)
		}
	}

	// Subject union: each writer declares one subject the document names.
	var idx []uint64
	for _, sub := range []string{subject(1), subject(2), subject(1)} {
		e := base
		e.Subjects = []string{sub}
		_, i, err := st.PutIndexed(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, i)
	}
	if idx[0] != idx[1] || idx[1] != idx[2] {
		t.Errorf("log indexes %v, want one", idx)
	}
	for _, sub := range []string{subject(1), subject(2)} {
		if got, err := st.Get(ctx, sub); err != nil || len(got) != 1 || len(got[0].Subjects) != 2 {
			t.Errorf("Get(%s) = %+v, %v; want the one entry with both subjects", sub, got, err)
		}
	}
	cp, err := f.log.client(t).Log().Checkpoint(ctx)
	if err != nil || cp.Size != 1 {
		t.Errorf("served log of %d entries, %v; want 1", cp.Size, err)
	}

	// Signed by a key the log does not allow.
	other := &documents{signer: signingtest.SignerOf(t, signing.ED25519)}
	e := other.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: "run-1", Data: []byte("x"), Subjects: []string{subject(3)}})
	_, err = st.Put(ctx, e)
	if !errors.Is(err, logserver.ErrNotAllowed) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a document of a key the log does not allow: %v, want logserver.ErrNotAllowed", err)
	}
	rejecttest.Is(t, "foreign key", err, reject.ErrUnauthorized)
	if _, err := st.Fetch(ctx, store.Digest(e.Data)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Fetch of the refused document: %v, want ErrNotFound", err)
	}
}

// TestServedUnavailable: with the served log down, Put and reads are
// store.ErrUnavailable (no verdict), nothing is left that reads return,
// and both work again once it is back; a row whose Put got
// ErrUnavailable after its intent is completed by the next read.
func TestServedUnavailable(t *testing.T) {
	ctx := context.Background()
	f := newServedFixture(t)
	st := f.open(t, nil)
	stored := f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: "run-1", Data: []byte("a"), Subjects: []string{subject(1)}})
	if _, err := st.Put(ctx, stored); err != nil {
		t.Fatal(err)
	}
	f.log.stop()
	late := f.docs.doc(t, store.Entry{Kind: store.KindProvenance, Name: "run-1.provenance.json", RunID: "run-1", Data: []byte("p"), Subjects: []string{subject(1)}})
	_, err := st.Put(ctx, late)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), store.Digest(late.Data)) {
		t.Fatalf("Put with the served log down: %v, want ErrUnavailable naming the document", err)
	}
	rejecttest.Is(t, "Put with the served log down", err, reject.ErrUnavailable)
	if _, err := st.Fetch(ctx, store.Digest(stored.Data)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Fetch with the served log down: %v, want ErrUnavailable", err)
	}
	// A verifier's read-only store leaves the intent out.
	ro := f.open(t, &pgstore.Options{ReadOnly: true})
	f.log.start(t)
	got, err := ro.List(ctx, store.Filter{RunID: "run-1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("read-only List = %d entries, %v; want the stored one only", len(got), err)
	}
	if _, err := ro.Put(ctx, stored); err == nil {
		t.Errorf("a read-only store accepted a Put")
	}
	// The writer's next read completes the intent: the same bytes, logged once.
	got, err = st.List(ctx, store.Filter{RunID: "run-1"})
	if err != nil || len(got) != 2 {
		t.Fatalf("List after the log came back = %d entries, %v; want 2", len(got), err)
	}
	_, i, err := st.PutIndexed(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := f.log.client(t).Log().Checkpoint(ctx)
	if err != nil || cp.Size != 2 || i != 1 {
		t.Errorf("served log of %d entries (%v), provenance at %d; want 2 and 1", cp.Size, err, i)
	}
}

// TestServedIntent: a writer killed between its intent and the append (the
// row holds the bytes, no log index) leaves bytes the next List of the run
// returns verified, appended once; an intent whose document the log
// refuses is removed, not returned.
func TestServedIntent(t *testing.T) {
	ctx := context.Background()
	f := newServedFixture(t)
	st := f.open(t, nil)
	e := f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: "run-1", Data: []byte("a"), Subjects: []string{subject(1)}})
	bad := (&documents{signer: signingtest.SignerOf(t, signing.ED25519)}).doc(t, store.Entry{Kind: store.KindLink, Name: "test", RunID: "run-1", Data: []byte("b")})
	for _, x := range []store.Entry{e, bad} {
		if err := server(t).Exec(ctx, f.db, fmt.Sprintf(`INSERT INTO stepseal_entries (digest, kind, name, run_id, data, log_index) VALUES ('\x%s', '%s', '%s', '%s', '\x%x', NULL)`,
			strings.TrimPrefix(store.Digest(x.Data), "sha256:"), x.Kind, x.Name, x.RunID, x.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Get(ctx, subject(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an intent's subject: %v, want ErrNotFound (the log names its subjects)", err)
	}
	got, err := st.List(ctx, store.Filter{RunID: "run-1"})
	if err != nil || len(got) != 1 || got[0].Digest != store.Digest(e.Data) || got[0].Name != e.Name {
		t.Fatalf("List of the run = %+v, %v; want the intent's entry only", got, err)
	}
	if got, err := st.Get(ctx, subject(1)); err != nil || len(got) != 1 {
		t.Errorf("Get(%s) after the intent completed: %d, %v", subject(1), len(got), err)
	}
	if _, err := st.Fetch(ctx, store.Digest(bad.Data)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Fetch of the refused intent: %v, want ErrNotFound", err)
	}
	if _, i, err := st.PutIndexed(ctx, e); err != nil || i != 0 {
		t.Errorf("Put of the completed intent's bytes: index %d, %v; want 0", i, err)
	}
	cp, err := f.log.client(t).Log().Checkpoint(ctx)
	if err != nil || cp.Size != 1 {
		t.Errorf("served log of %d entries, %v; want 1", cp.Size, err)
	}
}

// TestServedReplicas: 4 stores (replicas) on one database and one served
// log, 8 writers each, store the same 64 documents: 64 rows, 64 log
// entries, every read verified.
func TestServedReplicas(t *testing.T) {
	ctx := context.Background()
	f := newServedFixture(t)
	var es []store.Entry
	for i := range 64 {
		es = append(es, f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: fmt.Sprintf("step%d", i), RunID: fmt.Sprintf("run-%d", i%8),
			Data: []byte(fmt.Sprint(i)), Subjects: []string{subject(i), subject(1000)}}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32*64)
	for r := range 4 {
		st := f.open(t, nil)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range es {
					if _, err := st.Put(ctx, es[(k+r*8+w)%len(es)]); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ro := f.open(t, &pgstore.Options{ReadOnly: true})
	all, err := ro.Get(ctx, subject(1000))
	if err != nil || len(all) != len(es) {
		t.Fatalf("Get(shared subject) = %d, %v; want %d", len(all), err, len(es))
	}
	cp, err := f.log.client(t).Log().Checkpoint(ctx)
	if err != nil || cp.Size != uint64(len(es)) {
		t.Errorf("served log of %d entries, %v; want %d", cp.Size, err, len(es))
	}
}

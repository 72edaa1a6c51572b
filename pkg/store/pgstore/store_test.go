package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
	"github.com/stepseal/stepseal/pkg/store/storetest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// srv is one PostgreSQL server for the package's tests (each test gets its
// own database); nil when PostgreSQL is not installed.
var srv *pgtest.Server

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(func() int {
		if bin := pgtest.Bin(); bin != "" {
			s, err := pgtest.New(bin, pgtest.Options{})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer s.Close()
			if err := s.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err, "\n", s.LogTail(4096))
				return 1
			}
			srv = s
		}
		return m.Run()
	}())
}

func server(t testing.TB) *pgtest.Server {
	t.Helper()
	if srv == nil {
		if os.Getenv("PGTEST_REQUIRED") != "" {
			t.Fatal("PostgreSQL is not installed (hack/install-test-deps.sh installs it)")
		}
		t.Skip("PostgreSQL is not installed (hack/install-test-deps.sh installs it)")
	}
	return srv
}

// fixture is one database and one log, as replicas of a deployment share.
type fixture struct {
	dsn    string
	logDir string
	skey   string
	key    tlog.Key
	log    *tlog.Log
	db     string
}

func newFixture(t testing.TB, s *pgtest.Server) *fixture {
	t.Helper()
	skey, _, err := tlog.GenerateKey("stepseal.dev/pgstore-test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dsn: s.NewDatabase(t), logDir: filepath.Join(t.TempDir(), "log"), skey: skey, key: key}
	f.db = dbName(f.dsn)
	f.log = f.openLog(t)
	return f
}

func dbName(dsn string) string {
	for _, kv := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(kv, "dbname="); ok {
			return v
		}
	}
	return ""
}

// openLog opens the fixture's log directory. Replicas in one process share
// one *tlog.Log, as two controller processes share the directory (tlog.Open
// would also share one sequencer per directory in a process).
func (f *fixture) openLog(t testing.TB) *tlog.Log {
	t.Helper()
	l, err := tlog.Open(context.Background(), f.logDir, f.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func (f *fixture) open(t testing.TB, l *tlog.Log) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), f.dsn, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func subject(i int) string { return fmt.Sprintf("sha256:%064x", i) }

func TestConformance(t *testing.T) {
	s := server(t)
	fixtures := map[store.Store]*fixture{}
	var mu sync.Mutex
	sql := func(t *testing.T, st store.Store, q string) {
		t.Helper()
		mu.Lock()
		f := fixtures[st]
		mu.Unlock()
		if err := s.Exec(context.Background(), f.db, q); err != nil {
			t.Fatal(err)
		}
	}
	where := func(d string) string { return fmt.Sprintf(" WHERE digest = '\\x%s'", strings.TrimPrefix(d, "sha256:")) }
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) store.Store {
			f := newFixture(t, s)
			st := f.open(t, f.log)
			mu.Lock()
			fixtures[st] = f
			mu.Unlock()
			return st
		},
		Reopen: func(t *testing.T, st store.Store) store.Store {
			mu.Lock()
			f := fixtures[st]
			mu.Unlock()
			_ = st.(*pgstore.Store).Close(context.Background())
			return f.open(t, f.log)
		},
		Tamper: func(t *testing.T, st store.Store, d string) {
			sql(t, st, `UPDATE stepseal_entries SET data = 'tampered'::bytea`+where(d))
		},
		Edits: storetest.TamperEditsRow,
		Edit: func(t *testing.T, st store.Store, d string, what storetest.Edit) {
			switch what {
			case storetest.EditData:
				sql(t, st, `UPDATE stepseal_entries SET data = data || 'x'::bytea`+where(d))
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

// TestRowEdited: an edited row is refused with ErrRowMismatch under
// store.ErrCorrupt, naming the entry, its log entry and what differs.
func TestRowEdited(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	st := f.open(t, f.log)
	ctx := context.Background()
	d, i, err := st.PutIndexed(ctx, store.Entry{Kind: store.KindLink, Name: "build.compile", RunID: "run-1", Data: []byte(`{"signed":{}}`), Subjects: []string{subject(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, f.db, fmt.Sprintf(`UPDATE stepseal_entries SET data = '{"signed":{"x":1}}'::bytea, name = 'build.other' WHERE digest = '\x%s'`, strings.TrimPrefix(d, "sha256:"))); err != nil {
		t.Fatal(err)
	}
	_, err = st.Fetch(ctx, d)
	for _, want := range []error{pgstore.ErrRowMismatch, store.ErrCorrupt, reject.ErrMismatch, reject.ErrRefused} {
		if !errors.Is(err, want) {
			t.Errorf("Fetch of an edited row: %v, want errors.Is %v", err, want)
		}
	}
	if errors.Is(err, reject.ErrUnableToCheck) {
		t.Errorf("Fetch of an edited row: %v is also unable-to-check", err)
	}
	msg := fmt.Sprint(err)
	for _, want := range []string{d, `"build.other"`, fmt.Sprintf("log entry %d", i), "data", `name "build.other" (log: "build.compile")`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
}

// TestConcurrentWriters: 32 writers, 8 documents each, as two replicas
// (two Stores and pools on one database and one log): every document
// stored once, one log entry each.
func TestConcurrentWriters(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	replicas := []*pgstore.Store{f.open(t, f.log), f.open(t, f.log)}
	ctx := context.Background()
	cp0, err := f.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 32, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < each; j++ {
				n := w*each + j
				data := fmt.Sprintf(`{"doc":%d}`, n)
				if _, err := replicas[w%2].Put(ctx, store.Entry{Kind: store.KindLink, Name: fmt.Sprintf("step-%d", n), RunID: fmt.Sprintf("run-%d", w), Data: []byte(data), Subjects: []string{subject(n), subject(100000)}}); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, err := replicas[0].Get(ctx, subject(100000))
	if err != nil || len(all) != writers*each {
		t.Fatalf("Get(shared subject) = %d entries, %v; want %d", len(all), err, writers*each)
	}
	cp, err := f.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := cp.Size - cp0.Size; got != writers*each {
		t.Fatalf("log grew by %d entries for %d documents", got, writers*each)
	}
}

// TestSameDocumentManyWriters: 16 writers across two replicas store one
// document: one row, one log entry. Then 16 writers add one subject each
// to it: the row has the union (no lost update) and the log's newest record
// of it says so.
func TestSameDocumentManyWriters(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	replicas := []*pgstore.Store{f.open(t, f.log), f.open(t, f.log)}
	ctx := context.Background()
	size := func() uint64 {
		cp, err := f.log.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	run := func(subjects func(i int) []string) []uint64 {
		var wg sync.WaitGroup
		idx := make([]uint64, 16)
		errs := make([]error, 16)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, idx[i], errs[i] = replicas[i%2].PutIndexed(ctx, store.Entry{Kind: store.KindProvenance, Name: "run", RunID: "r", Data: []byte("one document"), Subjects: subjects(i)})
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		return idx
	}
	before := size()
	idx := run(func(int) []string { return []string{subject(1)} })
	if got := size() - before; got != 1 {
		t.Fatalf("16 writers of one document: the log grew by %d entries, want 1", got)
	}
	for _, i := range idx {
		if i != idx[0] {
			t.Fatalf("16 writers of one document got log indexes %v, want one", idx)
		}
	}
	rows, err := replicas[1].List(ctx, store.Filter{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("List = %d entries, %v; want 1", len(rows), err)
	}

	run(func(i int) []string { return []string{subject(100 + i)} })
	e, err := replicas[0].Fetch(ctx, rows[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Subjects) != 17 {
		t.Fatalf("after 16 writers added a subject each: %d subjects, want 17 (the union)", len(e.Subjects))
	}
	for i := 0; i < 16; i++ {
		if got, err := replicas[1].Get(ctx, subject(100+i)); err != nil || len(got) != 1 {
			t.Fatalf("Get(subject %d) = %d, %v", 100+i, len(got), err)
		}
	}
}

func TestListPage(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	st := f.open(t, f.log)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			kind := store.KindLink
			if i%3 == 0 {
				kind = store.KindAttestation
			}
			if _, err := st.Put(ctx, store.Entry{Kind: kind, Name: "x", RunID: fmt.Sprintf("run-%d", i%2), Data: []byte(fmt.Sprint(i)), Subjects: []string{subject(i % 4)}}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	for _, flt := range []store.Filter{{}, {Kind: store.KindLink}, {RunID: "run-1"}, {Subject: subject(1)}, {Kind: store.KindLink, RunID: "run-0", Subject: subject(2)}} {
		want, err := st.List(ctx, flt)
		if err != nil {
			t.Fatal(err)
		}
		var got []store.Entry
		after := ""
		for pages := 0; ; pages++ {
			page, next, err := st.ListPage(ctx, flt, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			if pages > 10 {
				t.Fatal("ListPage does not end")
			}
			after = next
		}
		if len(got) != len(want) {
			t.Fatalf("ListPage(%+v) in pages of 3: %d entries, List %d", flt, len(got), len(want))
		}
		for i := range got {
			if got[i].Digest != want[i].Digest {
				t.Fatalf("ListPage(%+v) entry %d is %s, List's %s", flt, i, got[i].Digest, want[i].Digest)
			}
		}
	}
}

// TestSchemaMigrationIdempotent: replicas starting together migrate once.
func TestSchemaMigrationIdempotent(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := pgstore.Open(context.Background(), f.dsn, f.log, nil)
			if err != nil {
				t.Error(err)
				return
			}
			_ = st.Close(context.Background())
		}()
	}
	wg.Wait()
}

// TestPasswordNeverInErrors: the DSN's password appears in no error, be
// it a bad password, a server that is not there or a DSN that does not
// parse.
func TestPasswordNeverInErrors(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	ctx := context.Background()
	const secret = "s3cret-Pa55word"
	for name, dsn := range map[string]string{
		"wrong password": strings.Replace(f.dsn, "password="+s.Password, "password="+secret, 1),
		"no server":      fmt.Sprintf("postgres://stepseal:%s@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", secret),
		"does not parse": fmt.Sprintf("postgres://stepseal:%s@127.0.0.1:bad port/db", secret),
		"bad keyword":    fmt.Sprintf("host=/nonexistent password=%s sslmode=nonsense", secret),
	} {
		_, err := pgstore.Open(ctx, dsn, f.log, nil)
		if err == nil {
			t.Fatalf("%s: Open succeeded", name)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
		if name == "wrong password" || name == "no server" {
			if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, reject.ErrUnableToCheck) {
				t.Errorf("%s: %v, want store.ErrUnavailable", name, err)
			}
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestLargeEntry: a document of 1 MiB with 5 000 subjects (a subject list
// too large for the log record, which then binds it by count and digest) is
// stored, found by its last subject and verified; dropping one subject row
// is caught.
func TestLargeEntry(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	st := f.open(t, f.log)
	ctx := context.Background()
	subjects := make([]string, 5000)
	for i := range subjects {
		subjects[i] = subject(i)
	}
	data := make([]byte, 1<<20)
	copy(data, "big link")
	d, err := st.Put(ctx, store.Entry{Kind: store.KindLink, Name: "big.step", Data: data, Subjects: subjects})
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, subject(4999))
	if err != nil || len(got) != 1 || len(got[0].Subjects) != 5000 || len(got[0].Data) != 1<<20 {
		t.Fatalf("Get = %d entries, %v", len(got), err)
	}
	if err := s.Exec(ctx, f.db, fmt.Sprintf(`DELETE FROM stepseal_subjects WHERE subject = '\x%064x'`, 1234)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Fetch(ctx, d); !errors.Is(err, pgstore.ErrRowMismatch) || !strings.Contains(err.Error(), "subjects (4999 in the database, 5000 in the log)") {
		t.Fatalf("Fetch after a subject row was deleted: %v", err)
	}
}

// TestLogClosed: a log that cannot take the record makes Put
// ErrUnavailable (no verdict) and stores no row.
func TestLogClosed(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	st := f.open(t, f.log)
	ctx := context.Background()
	if err := f.log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := st.Put(ctx, store.Entry{Kind: store.KindLink, Name: "a.b", Data: []byte("x")})
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, reject.ErrUnableToCheck) {
		t.Fatalf("Put with the log closed: %v, want store.ErrUnavailable", err)
	}
	if all, err := st.List(ctx, store.Filter{}); err != nil || len(all) != 0 {
		t.Fatalf("List after the failed Put: %d entries, %v", len(all), err)
	}
}

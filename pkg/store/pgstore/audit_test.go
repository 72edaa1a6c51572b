package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// killingLog is a *tlog.Log whose Append kills the process as soon as the
// entry is in the log: a replica killed between a Put's log append and
// its row's commit.
type killingLog struct{ *tlog.Log }

func (l killingLog) Append(ctx context.Context, data []byte) (uint64, error) {
	i, err := l.Log.Append(ctx, data)
	if err == nil {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return i, err
}

// attempt1 is the document the killed process stored half.
var attempt1 = store.Entry{Kind: store.KindProvenance, Name: "prov", RunID: "run-1", Data: []byte("attempt 1"), Subjects: []string{subject(1)}}

// crashAfterAppend (the child of TestAuditNamesSupersededAttempts) Puts
// attempt1 through killingLog: it never returns.
func crashAfterAppend(ctx context.Context, l *tlog.Log) int {
	st, err := pgstore.Open(ctx, os.Getenv("PGSTORE_TEST_DSN"), killingLog{l}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, err = st.Put(ctx, attempt1)
	fmt.Fprintln(os.Stderr, "Put returned:", err)
	return 1
}

// TestAuditNamesSupersededAttempts: a replica process SIGKILLed between
// its Put's log append and the row's commit leaves a log entry no row
// names; the run is then stored with another document (signed again).
// Audit names that entry a superseded attempt (by the row's log entry),
// and a subject union's earlier record an alias, with no error. A row
// deleted behind the store's back leaves its log entry unaccounted for:
// ErrUnaccounted (reject.ErrMismatch) naming the log entry and document.
func TestAuditNamesSupersededAttempts(t *testing.T) {
	s := server(t)
	f := newFixture(t, s)
	ctx := context.Background()
	if err := f.log.Close(ctx); err != nil { // the child appends first
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=0", "PGSTORE_TEST_KEY="+f.skey,
		"PGSTORE_TEST_LOG="+f.logDir, "PGSTORE_TEST_DSN="+f.dsn, "PGSTORE_TEST_PHASE=crash")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed after its append: %v\n%s", err, out)
	}

	st := f.open(t, f.openLog(t))
	if all, err := st.List(ctx, store.Filter{}); err != nil || len(all) != 0 {
		t.Fatalf("after the crash: %d rows (%v), want none", len(all), err)
	}
	// The controller signs the run again: another document, same run and name.
	attempt2 := attempt1
	attempt2.Data = []byte("attempt 2")
	if _, err := st.Put(ctx, attempt2); err != nil {
		t.Fatal(err)
	}
	attempt2.Subjects = []string{subject(2)}
	if _, err := st.Put(ctx, attempt2); err != nil { // a new subject: a new record, the first is an alias
		t.Fatal(err)
	}
	link := store.Entry{Kind: store.KindLink, Name: "build.0123abcd.link", RunID: "run-1", Data: []byte("link"), Subjects: []string{subject(3)}}
	if _, err := st.Put(ctx, link); err != nil {
		t.Fatal(err)
	}

	rep, err := st.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []pgstore.AuditEntry{
		{Index: 0, Class: pgstore.ClassSuperseded, Digest: store.Digest(attempt1.Data), Kind: store.KindProvenance, Name: "prov", RunID: "run-1", Of: 2},
		{Index: 1, Class: pgstore.ClassAlias, Digest: store.Digest(attempt2.Data), Kind: store.KindProvenance, Name: "prov", RunID: "run-1", Of: 2},
	}
	if rep.Size != 4 || rep.Rows != 2 || fmt.Sprint(rep.Others) != fmt.Sprint(want) {
		t.Fatalf("Audit = %+v, want 4 log entries, 2 rows and others %v", rep, want)
	}
	for _, e := range rep.Others {
		t.Log(e)
	}

	hex := strings.TrimPrefix(store.Digest(link.Data), "sha256:")
	if err := s.Exec(ctx, f.db, fmt.Sprintf(`DELETE FROM stepseal_subjects WHERE digest = '\x%s'; DELETE FROM stepseal_entries WHERE digest = '\x%s'`, hex, hex)); err != nil {
		t.Fatal(err)
	}
	rep, err = st.Audit(ctx)
	if !errors.Is(err, pgstore.ErrUnaccounted) || !errors.Is(err, reject.ErrMismatch) {
		t.Fatalf("a row deleted: Audit error %v, want ErrUnaccounted", err)
	}
	for _, s := range []string{"log entry 3", store.Digest(link.Data), "build.0123abcd.link"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not name %s: %v", s, err)
		}
	}
	if rep.Count(pgstore.ClassUnaccounted) != 1 || rep.Count(pgstore.ClassSuperseded) != 1 || rep.Count(pgstore.ClassAlias) != 1 {
		t.Errorf("report %+v", rep)
	}
}

// TestServedAudit: on a served log, every document a store Put is a row's
// record; an intent's document is named an intent by a read-only auditor
// and completed by a writing one; a document appended to the log behind
// the store (another writer of the same log) is unaccounted for, named
// with its log entry.
func TestServedAudit(t *testing.T) {
	ctx := context.Background()
	f := newServedFixture(t)
	st := f.open(t, nil)
	for i := range 3 {
		e := f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: fmt.Sprint("run-", i), Data: []byte{byte(i)}, Subjects: []string{subject(i)}})
		if _, err := st.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := st.Audit(ctx)
	if err != nil || rep.Size != 3 || rep.Rows != 3 || len(rep.Others) != 0 {
		t.Fatalf("Audit = %+v, %v; want 3 rows, 3 log entries, nothing else", rep, err)
	}
	// A writer stopped between its append and the row's completion: the
	// row is an intent whose document is in the log. A read-only auditor
	// names it so; a writing store completes it.
	last := f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: "run-2", Data: []byte{2}, Subjects: []string{subject(2)}})
	if err := server(t).Exec(ctx, f.db, fmt.Sprintf(`UPDATE stepseal_entries SET log_index = NULL WHERE digest = '\x%s'`, strings.TrimPrefix(store.Digest(last.Data), "sha256:"))); err != nil {
		t.Fatal(err)
	}
	rep, err = f.open(t, &pgstore.Options{ReadOnly: true}).Audit(ctx)
	if err != nil || rep.Rows != 2 || len(rep.Others) != 1 || rep.Others[0].Class != pgstore.ClassIntent || rep.Others[0].Index != 2 {
		t.Fatalf("read-only Audit with an intent = %+v, %v; want log entry 2 an intent", rep, err)
	}
	if rep, err = st.Audit(ctx); err != nil || rep.Rows != 3 || len(rep.Others) != 0 {
		t.Fatalf("Audit by a writing store = %+v, %v; want the intent completed", rep, err)
	}

	other := f.docs.doc(t, store.Entry{Kind: store.KindLink, Name: "test", RunID: "run-9", Data: []byte("behind"), Subjects: []string{subject(9)}})
	if _, err := f.log.client(t).Add(ctx, other.Data); err != nil {
		t.Fatal(err)
	}
	rep, err = st.Audit(ctx)
	if !errors.Is(err, pgstore.ErrUnaccounted) || !strings.Contains(err.Error(), "log entry 3") || !strings.Contains(err.Error(), store.Digest(other.Data)) {
		t.Fatalf("a document logged behind the store: %v, want ErrUnaccounted naming log entry 3 and %s", err, store.Digest(other.Data))
	}
	if rep.Count(pgstore.ClassUnaccounted) != 1 {
		t.Errorf("report %+v", rep)
	}
}

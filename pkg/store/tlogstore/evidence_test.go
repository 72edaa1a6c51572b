package tlogstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

func keyPair(t *testing.T, origin string) (tlog.Key, string) {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k, vkey
}

func put(t *testing.T, s *Store, e store.Entry) string {
	t.Helper()
	d, err := s.Put(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A rotation anchors the log at 2 entries; a third is logged after it.
func TestEvidenceLogged(t *testing.T) {
	k, vkey := keyPair(t, "stepseal.test/evidence")
	dir := t.TempDir()
	s := openStore(t, dir, k)
	a := put(t, s, link("build.compile.aaaaaaaa.link", "before-1"))
	b := put(t, s, link("test.unit.bbbbbbbb.link", "before-2"))
	anchor, err := Anchor(ctx, dir, vkey+"\n")
	if err != nil || anchor.Size != 2 || anchor.Key != vkey || !strings.HasPrefix(anchor.Checkpoint, "stepseal.test/evidence\n2\n") {
		t.Fatalf("anchor %+v, %v", anchor, err)
	}
	c := put(t, s, link("build.compile.aaaaaaaa.link", "after"))

	ev, err := NewEvidence(dir, vkey)
	if err != nil {
		t.Fatal(err)
	}
	for want, d := range map[uint64]string{0: a, 1: b} {
		if i, err := ev.Logged(ctx, anchor, d); err != nil || i != want {
			t.Fatalf("%s: index %d, %v; want %d", d, i, err, want)
		}
	}
	// The bare log directory works as well as the store's.
	if ev2, _ := NewEvidence(filepath.Join(dir, "log"), vkey); ev2 != nil {
		if _, err := ev2.Logged(ctx, anchor, a); err != nil {
			t.Fatal(err)
		}
	}
	if i, err := ev.Logged(ctx, anchor, c); !errors.Is(err, ErrNotLogged) || !errors.Is(err, reject.ErrMissing) || i != 2 ||
		!strings.Contains(err.Error(), "at index 2, at or after the rotation (log size 2)") {
		t.Fatalf("link logged after the rotation: %d, %v", i, err)
	}
	if _, err := ev.Logged(ctx, anchor, store.Digest([]byte("never"))); !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), "holds no link record") {
		t.Fatalf("link never logged: %v", err)
	}

	// Another log's key: not the log the layout names.
	_, other := keyPair(t, "stepseal.test/other")
	ev3, _ := NewEvidence(dir, other)
	if _, err := ev3.Logged(ctx, anchor, a); !errors.Is(err, ErrLogKey) || !errors.Is(err, reject.ErrMismatch) {
		t.Fatalf("wrong log key: %v", err)
	}
	// An anchor whose checkpoint the log's key did not sign as recorded.
	forged := anchor
	forged.Checkpoint = strings.Replace(anchor.Checkpoint, "\n2\n", "\n3\n", 1)
	if _, err := ev.Logged(ctx, forged, a); !errors.Is(err, tlog.ErrBadCheckpoint) {
		t.Fatalf("forged anchor checkpoint: %v", err)
	}
	wrongSize := anchor
	wrongSize.Size = 3
	if _, err := ev.Logged(ctx, wrongSize, c); !errors.Is(err, tlog.ErrBadCheckpoint) || !strings.Contains(err.Error(), "records size 3") {
		t.Fatalf("anchor size not the checkpoint's: %v", err)
	}
}

// A record changed on disk after the rotation: its inclusion fails.
func TestEvidenceTamperedLog(t *testing.T) {
	k, vkey := keyPair(t, "stepseal.test/evidence")
	dir := t.TempDir()
	s := openStore(t, dir, k)
	a := put(t, s, link("build.compile.aaaaaaaa.link", "before-1"))
	anchor, err := Anchor(ctx, dir, vkey)
	if err != nil {
		t.Fatal(err)
	}
	tamperRecord(t, s, a)
	ev, _ := NewEvidence(dir, vkey)
	if _, err := ev.Logged(ctx, anchor, a); !errors.Is(err, tlog.ErrInclusion) || !errors.Is(err, reject.ErrRefused) {
		t.Fatalf("tampered record: %v", err)
	}
}

// Whoever holds the log's key rewrites the log so that a link signed after
// the rotation sits below the anchored size: the log no longer extends the
// tree the layout anchors, and the evidence is refused.
func TestEvidenceRewrittenLogRefused(t *testing.T) {
	k, vkey := keyPair(t, "stepseal.test/evidence")
	dir := t.TempDir()
	s := openStore(t, dir, k)
	put(t, s, link("build.compile.aaaaaaaa.link", "before-1"))
	put(t, s, link("test.unit.bbbbbbbb.link", "before-2"))
	anchor, err := Anchor(ctx, dir, vkey)
	if err != nil {
		t.Fatal(err)
	}
	fork := t.TempDir()
	f := openStore(t, fork, k)
	late := put(t, f, link("build.compile.aaaaaaaa.link", "signed after the rotation"))
	put(t, f, link("test.unit.bbbbbbbb.link", "before-2"))
	put(t, f, link("x.y.cccccccc.link", "more"))
	ev, _ := NewEvidence(fork, vkey)
	_, err = ev.Logged(ctx, anchor, late)
	if !errors.Is(err, tlog.ErrConsistency) && !errors.Is(err, tlog.ErrFork) {
		t.Fatalf("rewritten log: %v", err)
	}
}

// A directory with no log: no signed checkpoint, refused.
func TestEvidenceNoLog(t *testing.T) {
	k, vkey := keyPair(t, "stepseal.test/evidence")
	dir := t.TempDir()
	s := openStore(t, dir, k)
	a := put(t, s, link("build.compile.aaaaaaaa.link", "before-1"))
	anchor, err := Anchor(ctx, dir, vkey)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := NewEvidence(filepath.Join(t.TempDir(), "nothing"), vkey)
	_, err = ev.Logged(ctx, anchor, a)
	if !errors.Is(err, tlog.ErrBadCheckpoint) || !strings.Contains(err.Error(), "nothing") {
		t.Fatalf("evidence from an empty directory: %v", err)
	}
}

// The store's index is a cache anyone could edit: a line placing a link
// logged after the rotation below it is not believed, a wrong or missing
// line for one logged before does not hide it.
func TestEvidenceIndexIsOnlyAHint(t *testing.T) {
	k, vkey := keyPair(t, "stepseal.test/evidence")
	dir := t.TempDir()
	s := openStore(t, dir, k)
	a := put(t, s, link("build.compile.aaaaaaaa.link", "before-1"))
	put(t, s, link("test.unit.bbbbbbbb.link", "before-2"))
	anchor, err := Anchor(ctx, dir, vkey)
	if err != nil {
		t.Fatal(err)
	}
	c := put(t, s, link("build.compile.aaaaaaaa.link", "after"))
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	lie := indexLine{I: 0, Digest: c, Kind: store.KindLink, Subjects: []string{}}.encode()
	lie = append(lie, indexLine{I: 1, Digest: a, Kind: store.KindLink, Subjects: []string{}}.encode()...)
	if err := os.WriteFile(filepath.Join(dir, "index"), lie, 0o644); err != nil {
		t.Fatal(err)
	}
	ev, _ := NewEvidence(dir, vkey)
	if _, err := ev.Logged(ctx, anchor, c); !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), "at index 2") {
		t.Fatalf("a lying index line: %v", err)
	}
	if i, err := ev.Logged(ctx, anchor, a); err != nil || i != 0 {
		t.Fatalf("a wrong index line: %d, %v", i, err)
	}
	os.Remove(filepath.Join(dir, "index"))
	ev, _ = NewEvidence(dir, vkey)
	if i, err := ev.Logged(ctx, anchor, a); err != nil || i != 0 {
		t.Fatalf("no index: %d, %v", i, err)
	}
}

package tlog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Attacks on a log at rest: each test changes the log's files behind its
// back, as someone with write access to the directory (but not the key, or
// with the key for the fork tests) could, and asserts the exact error.

func TestAttackEntryBundleEdited(t *testing.T) {
	k := testKey(t, "attack")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, "entry", 5)
	c := NewClient(dir, k.Verifier)
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := entryBundlePath(dir, 2, cp.Size)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "entry-2", "entry-X", 1) // same length: the bundle still parses
	if edited == string(b) {
		t.Fatal("entry-2 not found in its bundle")
	}
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Entry(ctx, 2, cp)
	if !errors.Is(err, ErrInclusion) || !strings.Contains(err.Error(), "entry 2 ") {
		t.Fatalf("Entry(2) of an edited bundle: %v, want ErrInclusion naming entry 2", err)
	}
	if _, err := l.Entry(ctx, 2); !errors.Is(err, ErrInclusion) {
		t.Fatalf("Log.Entry(2) of an edited bundle: %v, want ErrInclusion", err)
	}
	// The other entries of the bundle are untouched and still verify.
	if got, err := c.Entry(ctx, 3, cp); err != nil || string(got) != "entry-3" {
		t.Fatalf("Entry(3) = %q, %v", got, err)
	}
	// Truncated bundle: the entry is gone.
	if err := os.WriteFile(p, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Entry(ctx, 4, cp); !errors.Is(err, ErrInclusion) {
		t.Fatalf("Entry(4) of a truncated bundle: %v, want ErrInclusion", err)
	}
}

func TestAttackTileEdited(t *testing.T) {
	k := testKey(t, "attack")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, "entry", 6)
	c := NewClient(dir, k.Verifier)
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Level-0 tile: 32-byte leaf hashes. Swap in the hash of other data at
	// leaf 3; entry 2's proof uses it as a sibling.
	p := filepath.Join(dir, layout.TilePath(0, 0, layout.PartialTileSize(0, 0, cp.Size)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[3*32:], LeafHash([]byte("forged")))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = c.VerifyInclusion(ctx, []byte("entry-2"), 2, cp)
	if !errors.Is(err, ErrInclusion) || !strings.Contains(err.Error(), "entry 2 in tree attack@6") {
		t.Fatalf("VerifyInclusion over an edited tile: %v, want ErrInclusion naming entry 2 and size 6", err)
	}
	// A deleted tile: no proof at all is a failure too (fail closed).
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyInclusion(ctx, []byte("entry-0"), 0, cp); !errors.Is(err, ErrInclusion) {
		t.Fatalf("VerifyInclusion without tiles: %v, want ErrInclusion", err)
	}
}

func TestAttackTruncatedLog(t *testing.T) {
	k := testKey(t, "attack")
	dir := t.TempDir()
	l, err := Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "entry", 4)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	saved := t.TempDir()
	copyDir(t, dir, saved)
	l = openLog(t, dir, k)
	appendN(t, l, "more", 4)
	c := NewClient(dir, k.Verifier)
	if cp, err := c.Checkpoint(ctx); err != nil || cp.Size != 8 {
		t.Fatalf("checkpoint %v, %v", cp, err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The attacker restores the copy taken at 4 entries: a genuine,
	// correctly signed, older checkpoint.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, saved, dir)
	_, err = c.Checkpoint(ctx)
	if !errors.Is(err, ErrRollback) || !errors.Is(err, reject.ErrRollback) || !errors.Is(err, reject.ErrRefused) || !strings.Contains(err.Error(), "4 entries") || !strings.Contains(err.Error(), "of 8") {
		t.Fatalf("Checkpoint of a truncated log: %v, want ErrRollback naming sizes 4 and 8", err)
	}
	// The same, for a client that only kept the raw checkpoint it had seen.
	old, err := ParseCheckpoint(must(os.ReadFile(filepath.Join(saved, "checkpoint"))), k.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := c.Latest()
	if err := c.VerifyConsistency(ctx, latest, old); !errors.Is(err, ErrRollback) {
		t.Fatalf("VerifyConsistency(8 -> 4): %v, want ErrRollback", err)
	}
}

func TestAttackRollbackReplayedCheckpoint(t *testing.T) {
	k := testKey(t, "attack")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, "a", 3)
	c := NewClient(dir, k.Verifier)
	cp3, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "b", 3)
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyCheckpoint(ctx, cp3.Raw); !errors.Is(err, ErrRollback) {
		t.Fatalf("replayed checkpoint of size 3 after 6: %v, want ErrRollback", err)
	}
	// A fresh client seeded with the newer checkpoint rejects it too.
	c2 := NewClient(dir, k.Verifier)
	latest, _ := c.Latest()
	if _, err := c2.Trust(ctx, latest.Raw); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.VerifyCheckpoint(ctx, cp3.Raw); !errors.Is(err, ErrRollback) {
		t.Fatalf("seeded client, replayed checkpoint: %v, want ErrRollback", err)
	}
}

// forkedLog makes a second log with the same key, sharing the first shared
// entries of the original and then diverging, up to size entries.
func forkedLog(t *testing.T, k Key, shared, size int) string {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "entry", shared)
	appendN(t, l, "forged", size-shared)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAttackForkedLog(t *testing.T) {
	k := testKey(t, "attack")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, "entry", 5)
	old, err := NewClient(dir, k.Verifier).Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("rewritten and longer", func(t *testing.T) {
		fork := forkedLog(t, k, 2, 7)
		c := NewClient(fork, k.Verifier)
		if _, err := c.Trust(ctx, old.Raw); err != nil {
			t.Fatal(err)
		}
		_, err := c.Checkpoint(ctx)
		if !errors.Is(err, ErrConsistency) || errors.Is(err, ErrFork) || !strings.Contains(err.Error(), "attack@7") || !strings.Contains(err.Error(), "attack@5") {
			t.Fatalf("Checkpoint of a rewritten log: %v, want ErrConsistency naming sizes 5 and 7", err)
		}
		// Stateless form.
		cp, err := NewClient(fork, k.Verifier).Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.VerifyConsistency(ctx, old, cp); !errors.Is(err, ErrConsistency) {
			t.Fatalf("VerifyConsistency(old, rewritten): %v, want ErrConsistency", err)
		}
		// An honest extension passes.
		appendN(t, l, "honest", 2)
		cp7, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := NewClient(dir, k.Verifier).VerifyConsistency(ctx, old, cp7); err != nil {
			t.Fatalf("honest extension: %v", err)
		}
	})

	t.Run("rewritten same size", func(t *testing.T) {
		fork := forkedLog(t, k, 2, 5)
		c := NewClient(fork, k.Verifier)
		if _, err := c.Trust(ctx, old.Raw); err != nil {
			t.Fatal(err)
		}
		_, err := c.Checkpoint(ctx)
		if !errors.Is(err, ErrFork) || !errors.Is(err, ErrConsistency) || !strings.Contains(err.Error(), "size 5") {
			t.Fatalf("Checkpoint of a same-size fork: %v, want ErrFork naming size 5", err)
		}
	})
}

func TestAttackCheckpointOtherKey(t *testing.T) {
	k := testKey(t, "attack")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, "entry", 3)
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Same origin name, another key: the body of the genuine checkpoint
	// re-signed.
	evil := testKey(t, "attack")
	n, err := note.Open(cp.Raw, note.VerifierList(k.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: n.Text}, evil.Signer)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(dir, k.Verifier)
	if _, err := c.VerifyCheckpoint(ctx, forged); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), `"attack"`) {
		t.Fatalf("checkpoint signed by another key: %v, want ErrBadCheckpoint naming the log", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "checkpoint"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkpoint(ctx); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("forged checkpoint file: %v, want ErrBadCheckpoint", err)
	}
	// Unsigned, or a checkpoint made by hand, is refused as well.
	if _, err := c.VerifyCheckpoint(ctx, []byte(n.Text)); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("unsigned checkpoint: %v, want ErrBadCheckpoint", err)
	}
	handmade := Checkpoint{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash}
	if err := c.VerifyInclusion(ctx, []byte("entry-0"), 0, handmade); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("VerifyInclusion with a handmade checkpoint: %v, want ErrBadCheckpoint", err)
	}
	if err := VerifyInclusionProof([]byte("entry-0"), 0, handmade, nil); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("VerifyInclusionProof with a handmade checkpoint: %v, want ErrBadCheckpoint", err)
	}
	// A checkpoint of another log (other origin) does not verify here.
	other := testKey(t, "other-log")
	ol := openLog(t, t.TempDir(), other)
	ocp, _ := ol.Checkpoint(ctx)
	if _, err := c.VerifyCheckpoint(ctx, ocp.Raw); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("checkpoint of another log: %v, want ErrBadCheckpoint", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

package tlog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
)

func TestAppendReadVerify(t *testing.T) {
	k := testKey(t, "stepseal.test/log")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	var data [][]byte
	var cps []Checkpoint
	for i := 0; i < 10; i++ {
		d := fmt.Appendf(nil, "entry %d", i)
		idx, err := l.Append(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if idx != uint64(i) {
			t.Fatalf("Append #%d returned index %d", i, idx)
		}
		// Append returned: a checkpoint covering the entry is already published.
		cp, err := l.Checkpoint(ctx)
		if err != nil || cp.Size <= idx {
			t.Fatalf("after Append(%d): checkpoint %v, %v", idx, cp, err)
		}
		data = append(data, d)
		cps = append(cps, cp)
	}
	// A reader with only the public key and the files.
	c := NewClient(dir, k.Verifier)
	cp, err := c.Checkpoint(ctx)
	if err != nil || cp.Size != 10 || cp.Origin != "stepseal.test/log" {
		t.Fatalf("Client.Checkpoint = %v, %v", cp, err)
	}
	for i, d := range data {
		got, err := c.Entry(ctx, uint64(i), cp)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("Entry(%d) = %q, %v", i, got, err)
		}
		if err := c.VerifyInclusion(ctx, d, uint64(i), cp); err != nil {
			t.Fatalf("VerifyInclusion(%d): %v", i, err)
		}
		p, err := l.InclusionProof(ctx, uint64(i), cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyInclusionProof(d, uint64(i), cp, p); err != nil {
			t.Fatalf("VerifyInclusionProof(%d): %v", i, err)
		}
		err = VerifyInclusionProof([]byte("other"), uint64(i), cp, p)
		if !errors.Is(err, ErrInclusion) {
			t.Fatalf("proof of entry %d accepted other data: %v", i, err)
		}
		checkRootsHex(t, err, cp)
	}
	for _, old := range cps {
		if err := c.VerifyConsistency(ctx, old, cp); err != nil {
			t.Fatalf("VerifyConsistency(%v, %v): %v", old, cp, err)
		}
		p, err := l.ConsistencyProof(ctx, old.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistencyProof(old, cp, p); err != nil {
			t.Fatalf("VerifyConsistencyProof(%v, %v): %v", old, cp, err)
		}
		if len(p) > 0 {
			bad := append([][]byte{}, p...)
			bad[0] = LeafHash([]byte("forged"))
			err := VerifyConsistencyProof(old, cp, bad)
			if !errors.Is(err, ErrConsistency) {
				t.Fatalf("forged consistency proof from %v: %v, want ErrConsistency", old, err)
			}
			checkRootsHex(t, err, old, cp)
		}
	}
	if _, err := c.Entry(ctx, 10, cp); !errors.Is(err, ErrNotIntegrated) {
		t.Fatalf("Entry beyond the tree: %v, want ErrNotIntegrated", err)
	}
}

func TestAppendDedupInProcess(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, "dedup"))
	a, err := l.Append(ctx, []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []byte("other")); err != nil {
		t.Fatal(err)
	}
	b, err := l.Append(ctx, []byte("same"))
	if err != nil || a != b {
		t.Fatalf("second Append of the same data: index %d, %v; first was %d", b, err, a)
	}
	cp, _ := l.Checkpoint(ctx)
	if cp.Size != 2 {
		t.Fatalf("tree has %d entries after appending 2 distinct ones", cp.Size)
	}
}

func TestAppendTooLarge(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, "big"))
	if _, err := l.Append(ctx, make([]byte, MaxEntrySize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of %d bytes: %v, want ErrTooLarge", MaxEntrySize+1, err)
	}
	if _, err := l.Append(ctx, make([]byte, MaxEntrySize)); err != nil {
		t.Fatalf("Append of %d bytes: %v", MaxEntrySize, err)
	}
}

func TestReopen(t *testing.T) {
	k := testKey(t, "reopen")
	dir := t.TempDir()
	l, err := Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "a", 300) // crosses an entry bundle and tile boundary
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []byte("after close")); err == nil {
		t.Fatal("Append after Close succeeded")
	}
	l2 := openLog(t, dir, k)
	idx, err := l2.Append(ctx, []byte("b"))
	if err != nil || idx != 300 {
		t.Fatalf("Append after reopen: %d, %v; want 300", idx, err)
	}
	for _, i := range []uint64{0, 255, 256, 299} {
		got, err := l2.Entry(ctx, i)
		if err != nil || string(got) != fmt.Sprintf("a-%d", i) {
			t.Fatalf("Entry(%d) after reopen = %q, %v", i, got, err)
		}
	}
	// Another key cannot take the log over.
	if _, err := Open(ctx, dir, testKey(t, "reopen"), nil); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("Open with another key: %v, want ErrBadCheckpoint", err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	k := testKey(t, "concurrent")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	const writers, each = 8, 25
	var mu sync.Mutex
	got := map[uint64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				d := fmt.Sprintf("w%d-%d", w, i)
				idx, err := l.Append(ctx, []byte(d))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, ok := got[idx]; ok {
					errs <- fmt.Errorf("index %d returned for %q and %q", idx, prev, d)
				}
				got[idx] = d
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := NewClient(dir, k.Verifier)
	cp, err := c.Checkpoint(ctx)
	if err != nil || cp.Size != writers*each {
		t.Fatalf("checkpoint %v, %v; want %d entries", cp, err, writers*each)
	}
	n := 0
	if err := c.Audit(ctx, cp, 0, func(i uint64, d []byte) error {
		n++
		if got[i] != string(d) {
			return fmt.Errorf("entry %d is %q, Append returned it for %q", i, d, got[i])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Fatalf("audit saw %d entries", n)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "log.key"), filepath.Join(dir, "log.pub")
	k, err := WriteKeyFiles(priv, pub, "stepseal.dev/log")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(priv)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := WriteKeyFiles(priv, pub, "stepseal.dev/log"); err == nil {
		t.Fatal("WriteKeyFiles overwrote an existing private key")
	}
	k2, err := ReadKey(priv)
	if err != nil || k2.Verifier.KeyHash() != k.Verifier.KeyHash() {
		t.Fatalf("ReadKey: %v", err)
	}
	v, err := ReadVerifier(pub)
	if err != nil || v.KeyHash() != k.Verifier.KeyHash() || v.Name() != "stepseal.dev/log" {
		t.Fatalf("ReadVerifier: %v", err)
	}
	// A damaged key file: the error names the file, never the key.
	b, _ := os.ReadFile(priv)
	secret := strings.TrimSpace(string(b))
	bad := secret[:len(secret)-4] + "A==="
	if err := os.WriteFile(priv, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ReadKey(priv)
	if err == nil {
		t.Fatal("ReadKey accepted a damaged key")
	}
	if strings.Contains(err.Error(), secret[len("PRIVATE+KEY+"):]) || strings.Contains(err.Error(), bad[len(bad)-20:]) {
		t.Fatalf("error shows key material: %v", err)
	}
	// Open refuses a verifier that does not match the signer.
	other := testKey(t, "stepseal.dev/log")
	if _, err := Open(ctx, t.TempDir(), Key{Signer: k.Signer, Verifier: other.Verifier}, nil); err == nil {
		t.Fatal("Open accepted a mismatched key pair")
	}
}

// entryBundlePath is the file holding entry index in a tree of size.
func entryBundlePath(dir string, index, size uint64) string {
	return filepath.Join(dir, layout.EntriesPathForLogIndex(index, size))
}

// checkRootsHex: a failed proof names the checkpoint's root in hex, never as
// the decimal byte array the merkle library prints.
func checkRootsHex(t *testing.T, err error, cps ...Checkpoint) {
	t.Helper()
	msg := err.Error()
	named := false
	for _, cp := range cps {
		named = named || strings.Contains(msg, hex.EncodeToString(cp.Hash))
	}
	if !named || strings.Contains(msg, "[") {
		t.Fatalf("proof failure %q: want a checkpoint's root in hex", msg)
	}
}

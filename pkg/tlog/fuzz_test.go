package tlog

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// seedLog returns a log's key, its checkpoint, and entries 0..n-1.
func seedLog(f *testing.F, n int) (Key, Checkpoint, string) {
	k := testKey(f, "fuzz.example/log")
	dir := f.TempDir()
	l := openLog(f, dir, k)
	appendN(f, l, "entry", n)
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		f.Fatal(err)
	}
	return k, cp, dir
}

// FuzzParseCheckpoint: checkpoints come from untrusted storage. The parser
// never panics, and what it accepts carries the log key's signature over
// the canonical three-line body it reports.
func FuzzParseCheckpoint(f *testing.F) {
	k, cp, _ := seedLog(f, 3)
	f.Add(cp.Raw)
	f.Add(bytes.Replace(cp.Raw, []byte("\n3\n"), []byte("\n4\n"), 1))
	f.Add([]byte("fuzz.example/log\n1\nAAAA\n\n— fuzz.example/log AAAAAA==\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := ParseCheckpoint(raw, k.Verifier)
		if err != nil {
			return
		}
		if got.Origin != "fuzz.example/log" || len(got.Hash) != 32 || !got.verified {
			t.Fatalf("accepted %q as %v", raw, got)
		}
		// Only the genuine body can carry a valid signature here.
		if got.Size != cp.Size || !bytes.Equal(got.Hash, cp.Hash) {
			t.Fatalf("accepted a checkpoint the log never signed: %v", got)
		}
	})
}

// FuzzParseEntryBundle: entry bundles come from untrusted storage. The
// parser never panics and what it accepts re-encodes to the same bytes.
func FuzzParseEntryBundle(f *testing.F) {
	_, cp, dir := seedLog(f, 3)
	f.Add(must(readFile(entryBundlePath(dir, 0, cp.Size))))
	f.Add([]byte{0, 1})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		entries, err := ParseEntryBundle(raw)
		if err != nil {
			return
		}
		var re []byte
		for _, e := range entries {
			re = binary.BigEndian.AppendUint16(re, uint16(len(e)))
			re = append(re, e...)
		}
		if !bytes.Equal(re, raw) {
			t.Fatalf("bundle %x parsed into %d entries that re-encode to %x", raw, len(entries), re)
		}
	})
}

// FuzzVerifyInclusionProof: proofs may come from an untrusted log. Verifying
// never panics and accepts only the entry actually at the index.
func FuzzVerifyInclusionProof(f *testing.F) {
	const n = 9
	k, cp, dir := seedLog(f, n)
	c := NewClient(dir, k.Verifier)
	entries := make([][]byte, n)
	for i := range entries {
		entries[i] = must(c.Entry(ctx, uint64(i), cp))
	}
	p := must(c.InclusionProof(ctx, 4, cp.Size))
	f.Add(uint64(4), []byte("entry-4"), bytes.Join(p, nil))
	f.Add(uint64(3), []byte("entry-4"), bytes.Join(p, nil))
	f.Add(uint64(100), []byte("x"), []byte{})
	f.Fuzz(func(t *testing.T, index uint64, data, flat []byte) {
		var hashes [][]byte
		for len(flat) >= 32 {
			hashes = append(hashes, flat[:32])
			flat = flat[32:]
		}
		if len(flat) > 0 {
			hashes = append(hashes, flat)
		}
		if err := VerifyInclusionProof(data, index, cp, hashes); err == nil {
			if index >= n || !bytes.Equal(entries[index], data) {
				t.Fatalf("accepted %q at index %d", data, index)
			}
		}
	})
}

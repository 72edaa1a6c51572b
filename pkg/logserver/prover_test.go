package logserver

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestProverMatchesTessera: the shared memoized prover gives the proofs
// Tessera's ProofBuilder gives, for every entry, in a tree that grows
// across tile boundaries between the calls (its memo, filled for the
// smaller tree, stays right for the larger), and each verifies against
// the checkpoint's root.
func TestProverMatchesTessera(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l, err := tlog.Open(ctx, dir, logKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	fetch := tclient.FileFetcher{Root: dir}
	p := newProver(fetch.ReadTile)
	n := 0
	for _, grow := range []int{3, 250, 300, 1} {
		data := make([][]byte, grow)
		for k := range data {
			data[k] = fmt.Appendf(nil, "entry %d", n+k)
		}
		if _, err := l.AppendMany(ctx, data); err != nil {
			t.Fatal(err)
		}
		n += grow
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != uint64(n) {
			t.Fatalf("checkpoint of %d entries, want %d", cp.Size, n)
		}
		pb, err := tclient.NewProofBuilder(ctx, cp.Size, fetch.ReadTile)
		if err != nil {
			t.Fatal(err)
		}
		for i := range uint64(n) {
			got, err := p.inclusion(ctx, i, cp.Size)
			if err != nil {
				t.Fatalf("entry %d of %d: %v", i, n, err)
			}
			want, err := pb.InclusionProof(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("entry %d of %d: %d hashes, want %d", i, n, len(got), len(want))
			}
			for k := range got {
				if !bytes.Equal(got[k], want[k]) {
					t.Fatalf("entry %d of %d: hash %d differs", i, n, k)
				}
			}
			if err := tlog.VerifyInclusionProof(fmt.Appendf(nil, "entry %d", i), i, cp, got); err != nil {
				t.Fatalf("entry %d of %d: %v", i, n, err)
			}
		}
	}
}

package trust

import (
	"fmt"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// benchRole is a signed role of 100 targets (≈13.6 KB), as in
// hack/bench/trust.sh.
func benchRole(b *testing.B) []byte {
	k := newKey(b)
	md := metadata.Targets()
	for j := 0; j < 100; j++ {
		p := fmt.Sprintf("images/role-0001/artifact-%03d", j)
		tf, err := metadata.TargetFile().FromBytes(p, []byte(p), "sha256")
		if err != nil {
			b.Fatal(err)
		}
		md.Signed.Targets[p] = tf
	}
	return sign(b, md, []*testKey{k})
}

func BenchmarkGuard(b *testing.B) {
	data := benchRole(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := checkMetadata("role-0001", data, DefaultMaxRoleSize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGoTUFParse(b *testing.B) {
	data := benchRole(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckJSON(b *testing.B) {
	data := benchRole(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := checkJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}

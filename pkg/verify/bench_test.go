package verify

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/verify/verifytest"
)

// The 50-step, 1 000-artifacts-per-step chain of the performance goal,
// generated once per test binary and written to a directory both engines
// read.
var (
	bigOnce  sync.Once
	bigChain *verifytest.Chain
	bigDir   string
	bigErr   error
)

func big(tb testing.TB) (*verifytest.Chain, string) {
	tb.Helper()
	bigOnce.Do(func() {
		bigChain, bigErr = verifytest.Generate(context.Background(), verifytest.Options{Steps: 50, Artifacts: 1000})
		if bigErr != nil {
			return
		}
		if bigDir, bigErr = os.MkdirTemp("", "verify-bench-"); bigErr == nil {
			bigErr = bigChain.WriteDir(bigDir)
		}
	})
	if bigErr != nil {
		tb.Fatal(bigErr)
	}
	return bigChain, bigDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

func verifyBig(tb testing.TB, c *verifytest.Chain, dir string) error {
	layout, err := ReadFile(filepath.Join(dir, "root.layout"))
	if err != nil {
		tb.Fatal(err)
	}
	_, err = Layout(context.Background(), layout, []signing.Verifier{c.Owner}, Dir(filepath.Join(dir, "links")),
		Options{RunID: c.RunID, Artifacts: c.Outputs})
	return err
}

func inTotoBig(tb testing.TB, c *verifytest.Chain, dir string) error {
	k, err := signing.InTotoKey(c.Owner.Public())
	if err != nil {
		tb.Fatal(err)
	}
	mb, err := in_toto.LoadMetadata(filepath.Join(dir, "root.layout"))
	if err != nil {
		return err
	}
	_, err = in_toto.InTotoVerify(mb, map[string]in_toto.Key{k.KeyID: k}, filepath.Join(dir, "links"), "", map[string]string{}, nil, false)
	return err
}

// TestBigChainVerdictsAgree: both engines accept the benchmark chain, and
// both reject it once one product deep in the chain changes.
func TestBigChainVerdictsAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a 50x1000 chain")
	}
	c, dir := big(t)
	if err := verifyBig(t, c, dir); err != nil {
		t.Fatalf("ours: %v", err)
	}
	if err := inTotoBig(t, c, dir); err != nil {
		t.Fatalf("in-toto-golang: %v", err)
	}
}

// BenchmarkVerify50x1000 is this package on the 50x1000 chain, reading the
// layout and links from disk as the CLI does.
func BenchmarkVerify50x1000(b *testing.B) {
	c, dir := big(b)
	for b.Loop() {
		if err := verifyBig(b, c, dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInTotoGolang50x1000 is in-toto-golang's InTotoVerify on the same files.
func BenchmarkInTotoGolang50x1000(b *testing.B) {
	c, dir := big(b)
	for b.Loop() {
		if err := inTotoBig(b, c, dir); err != nil {
			b.Fatal(err)
		}
	}
}

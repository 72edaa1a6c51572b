package witness

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	f_note "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/reject"
)

// These are fast unit tests with in-process cosigners (transparency-dev/
// formats' cosignature/v1 signer, what omniwitness signs with); the real
// witness is in pkg/logserver's TestWitness* tests.

type cosigner struct {
	vkey string
	s    note.Signer
}

func newCosigner(t testing.TB, name string) cosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f_note.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	return cosigner{vkey: vkey, s: s}
}

// checkpoint is a log-signed checkpoint of size n, cosigned by ws.
func checkpoint(t testing.TB, log note.Signer, n int, ws ...cosigner) []byte {
	t.Helper()
	signers := []note.Signer{log}
	for _, w := range ws {
		signers = append(signers, w.s)
	}
	raw, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", log.Name(), n)}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func logSigner(t testing.TB) note.Signer {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, "log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPolicyThreshold(t *testing.T) {
	log := logSigner(t)
	a, b, c := newCosigner(t, "a.test"), newCosigner(t, "b.test"), newCosigner(t, "c.test")
	p, err := NewPolicy(2, a.vkey, b.vkey, c.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.String(); got != "2 of [a.test b.test c.test]" {
		t.Errorf("String = %q", got)
	}
	if err := p.Check(checkpoint(t, log, 5, a, c), "cp"); err != nil {
		t.Errorf("2 of 3 cosigned: %v", err)
	}
	err = p.Check(checkpoint(t, log, 5, b), "cp")
	var we *Error
	if !errors.Is(err, ErrNotWitnessed) || !errors.Is(err, reject.ErrThreshold) || !errors.Is(err, reject.ErrRefused) || !errors.As(err, &we) {
		t.Fatalf("1 of 3: %v", err)
	}
	if len(we.Valid) != 1 || we.Valid[0] != "b.test" || len(we.Expected) != 3 || !strings.Contains(err.Error(), "1 valid cosignatures (b.test)") {
		t.Errorf("error names %+v: %v", we, err)
	}
	// A key of another witness with a name the policy knows is no cosignature.
	impostor := newCosigner(t, "a.test")
	if err := p.Check(checkpoint(t, log, 5, impostor, b), "cp"); !errors.Is(err, ErrNotWitnessed) {
		t.Errorf("impostor counted: %v", err)
	}
}

func TestPolicyFile(t *testing.T) {
	a, b := newCosigner(t, "a.test"), newCosigner(t, "b.test")
	p, err := ParsePolicy([]byte(fmt.Sprintf("# two witnesses\nwitness A %s http://127.0.0.1:1/\nwitness B %s http://127.0.0.1:2\ngroup g any A B\nquorum g\n", a.vkey, b.vkey)))
	if err != nil {
		t.Fatal(err)
	}
	ws := p.Witnesses()
	if len(ws) != 2 || ws[0].Name != "a.test" || ws[0].URL != "http://127.0.0.1:1" || p.String() != "1 of [a.test b.test]" {
		t.Errorf("policy %s: %+v", p, ws)
	}
	if err := p.Check(checkpoint(t, logSigner(t), 1, b), "cp"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "quorum none\n", "witness A x http://h\nquorum A\n", "group g 3 A\nquorum g\n", "quorum nothing\n",
		fmt.Sprintf("witness A %s http://h\ngroup z 0\ngroup g any z A\nquorum g\n", a.vkey)} {
		if _, err := ParsePolicy([]byte(bad)); !errors.Is(err, reject.ErrMalformed) {
			t.Errorf("policy %q: %v, want reject.ErrMalformed", bad, err)
		}
	}
	for _, k := range []int{0, 3} {
		if _, err := NewPolicy(k, a.vkey, b.vkey); !errors.Is(err, reject.ErrMalformed) {
			t.Errorf("threshold %d of 2: %v", k, err)
		}
	}
	if _, err := NewPolicy(1, a.vkey, a.vkey); !errors.Is(err, reject.ErrMalformed) {
		t.Errorf("one key twice: %v", err)
	}
}

// FuzzCheck feeds arbitrary notes to a policy's check: it never panics, and
// what it accepts carries a valid cosignature of the policy's witness.
func FuzzCheck(f *testing.F) {
	log := logSigner(f)
	w := newCosigner(f, "w.test")
	p, err := NewPolicy(1, w.vkey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(checkpoint(f, log, 3, w))
	f.Add(checkpoint(f, log, 3))
	f.Add([]byte("x\n\n— w.test AAAA\n"))
	fresh, err := p.WithFreshness(Freshness{MaxAge: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Freshness only ever takes cosignatures away.
		if fresh.Check(raw, "fuzz") == nil && p.Check(raw, "fuzz") != nil {
			t.Fatalf("accepted with a Freshness, refused without: %q", raw)
		}
		if p.Check(raw, "fuzz") != nil {
			return
		}
		n, err := note.Open(raw, note.VerifierList(p.Witnesses()[0].Verifier))
		if err != nil || len(n.Sigs) != 1 {
			t.Fatalf("accepted a note without a valid cosignature: %q (%v)", raw, err)
		}
	})
}

// FuzzParsePolicy: a policy file (a mounted ConfigMap) never panics the
// parser, and a parsed policy requires at least one witness.
func FuzzParsePolicy(f *testing.F) {
	a := newCosigner(f, "a.test")
	f.Add([]byte(fmt.Sprintf("witness A %s http://127.0.0.1:1/\nquorum A\n", a.vkey)))
	f.Add([]byte(fmt.Sprintf("witness A %s http://h\ngroup g 1 A\ngroup h all g A\nquorum h\n", a.vkey)))
	f.Add([]byte("group g 0\nquorum g\n"))
	f.Add([]byte("group g 0\ngroup h 1 g\nquorum h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		if p.Group().N < 1 || len(p.Witnesses()) == 0 || p.Check([]byte("x\n1\nAAAA\n\n— x AAAA\n"), "fuzz") == nil {
			t.Fatalf("policy %q requires nothing: %s", data, p)
		}
	})
}

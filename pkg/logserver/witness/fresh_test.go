package witness

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	f_note "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// timedCosigner signs C2SP cosignature/v1 lines dated when the test says
// (transparency-dev/formats' signer dates them now): a witness whose
// cosignature is old, or whose clock is ahead.
type timedCosigner struct {
	name string
	vkey string
	hash uint32
	priv ed25519.PrivateKey
}

func newTimedCosigner(t testing.TB, name string) timedCosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f_note.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	// PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>; base64 may hold '+'.
	fields := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(fields[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		t.Fatalf("private key %v", err)
	}
	return timedCosigner{name: name, vkey: vkey, hash: s.KeyHash(), priv: ed25519.NewKeyFromSeed(raw[1:])}
}

// line is the cosignature line over raw's note body, dated at.
func (c timedCosigner) line(t testing.TB, raw []byte, at time.Time) string {
	t.Helper()
	body := string(raw[:strings.LastIndex(string(raw), "\n\n")+1])
	ts := uint64(at.Unix())
	sig := ed25519.Sign(c.priv, fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", ts, body))
	b := binary.BigEndian.AppendUint32(nil, c.hash)
	b = binary.BigEndian.AppendUint64(b, ts)
	b = append(b, sig...)
	return "— " + c.name + " " + base64.StdEncoding.EncodeToString(b) + "\n"
}

// cosign appends the cosigners' lines, each dated at its time.
func cosign(t testing.TB, raw []byte, lines ...string) []byte {
	t.Helper()
	out := append([]byte(nil), raw...)
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}

// clock is a Freshness.Now the test moves.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// TestFreshness: with a MaxAge, a cosignature older than it does not count
// toward k-of-n: a checkpoint that satisfies the policy only with stale
// cosignatures is refused with ErrStale (reject.ErrExpired), one that
// lacks cosignatures even counting them with ErrNotWitnessed; a
// cosignature dated in the future does not count either; StaleWarn
// accepts and warns; a kept checkpoint (CheckTrusted) is judged on its
// cosignatures alone.
func TestFreshness(t *testing.T) {
	log := logSigner(t)
	a, b, c := newTimedCosigner(t, "a.test"), newTimedCosigner(t, "b.test"), newTimedCosigner(t, "c.test")
	base, err := NewPolicy(2, a.vkey, b.vkey, c.vkey)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p, err := base.WithFreshness(Freshness{MaxAge: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	cp := checkpoint(t, log, 7)
	fresh, old, ahead := clk.now.Add(-10*time.Minute), clk.now.Add(-2*time.Hour), clk.now.Add(time.Hour)

	if err := p.Check(cosign(t, cp, a.line(t, cp, fresh), c.line(t, cp, fresh)), "cp"); err != nil {
		t.Errorf("two fresh cosignatures: %v", err)
	}
	if err := p.Check(cosign(t, cp, a.line(t, cp, fresh), b.line(t, cp, old), c.line(t, cp, fresh)), "cp"); err != nil {
		t.Errorf("two fresh and one stale: %v", err)
	}

	stale := cosign(t, cp, a.line(t, cp, fresh), b.line(t, cp, old))
	err = p.Check(stale, "log.stepseal.test@7")
	var we *Error
	if !errors.Is(err, ErrStale) || !errors.Is(err, reject.ErrExpired) || !errors.Is(err, reject.ErrRefused) || errors.Is(err, ErrNotWitnessed) || !errors.As(err, &we) {
		t.Fatalf("one fresh, one stale of 2-of-3: %v, want ErrStale", err)
	}
	for _, m := range []string{"log.stepseal.test@7", "b.test (2h0m0s old)", "older than 1h0m0s"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not name %q", err, m)
		}
	}
	if err := p.CheckTrusted(stale, "cp"); err != nil {
		t.Errorf("a kept checkpoint is refused for its age: %v", err)
	}
	if err := base.Check(stale, "cp"); err != nil {
		t.Errorf("without Freshness: %v", err)
	}

	// Too few even counting the stale one: not witnessed.
	err = p.Check(cosign(t, cp, b.line(t, cp, old)), "cp")
	if !errors.Is(err, ErrNotWitnessed) || errors.Is(err, ErrStale) {
		t.Errorf("one stale of 2-of-3: %v, want ErrNotWitnessed", err)
	}

	// A witness whose cosignature is dated an hour ahead counts for
	// nothing; the error says why.
	err = p.Check(cosign(t, cp, a.line(t, cp, fresh), c.line(t, cp, ahead)), "cp")
	if !errors.Is(err, ErrNotWitnessed) || !strings.Contains(err.Error(), "dated in the future, not counted: c.test (1h0m0s ahead)") {
		t.Errorf("future-dated cosignature: %v", err)
	}
	if err := p.Check(cosign(t, cp, a.line(t, cp, fresh), c.line(t, cp, clk.now.Add(time.Minute))), "cp"); err != nil {
		t.Errorf("a minute of clock skew: %v", err)
	}

	// The same checkpoint ages: accepted now, refused two hours later.
	ok := cosign(t, cp, a.line(t, cp, fresh), c.line(t, cp, fresh))
	if err := p.Check(ok, "cp"); err != nil {
		t.Fatal(err)
	}
	clk.now = clk.now.Add(2 * time.Hour)
	if err := p.Check(ok, "cp"); !errors.Is(err, ErrStale) {
		t.Errorf("the same checkpoint two hours later: %v, want ErrStale", err)
	}
	clk.now = clk.now.Add(-2 * time.Hour)

	// Warn: accepted, and the warning names the checkpoint and the witness.
	var warned []string
	w, err := base.WithFreshness(Freshness{MaxAge: time.Hour, Stale: StaleWarn, Now: clk.Now, Warn: func(m string) { warned = append(warned, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(stale, "log.stepseal.test@7"); err != nil {
		t.Errorf("warn: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "log.stepseal.test@7") || !strings.Contains(warned[0], "b.test (2h0m0s old)") {
		t.Errorf("warnings %q", warned)
	}
	// Warn does not make too few cosignatures enough.
	if err := w.Check(cosign(t, cp, b.line(t, cp, old)), "cp"); !errors.Is(err, ErrNotWitnessed) {
		t.Errorf("warn with one stale of 2-of-3: %v", err)
	}

	for _, f := range []Freshness{{MaxAge: time.Hour, Stale: "ignore"}, {MaxAge: -time.Second}} {
		if _, err := base.WithFreshness(f); !errors.Is(err, reject.ErrMalformed) {
			t.Errorf("freshness %+v: %v", f, err)
		}
	}
}

// TestOldCosignatureOnNewerTree: the witnesses' cosignatures of an earlier
// checkpoint, moved onto a newer one the log signed, do not verify over
// it, so they do not count toward k-of-n however fresh they are.
func TestOldCosignatureOnNewerTree(t *testing.T) {
	log := logSigner(t)
	a, b := newTimedCosigner(t, "a.test"), newTimedCosigner(t, "b.test")
	base, err := NewPolicy(2, a.vkey, b.vkey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := base.WithFreshness(Freshness{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	older, newer := checkpoint(t, log, 7), checkpoint(t, log, 8)
	if err := p.Check(cosign(t, older, a.line(t, older, now), b.line(t, older, now)), "cp@7"); err != nil {
		t.Fatal(err)
	}
	err = p.Check(cosign(t, newer, a.line(t, older, now), b.line(t, newer, now)), "cp@8")
	var we *Error
	if !errors.Is(err, ErrNotWitnessed) || !errors.As(err, &we) || len(we.Invalid) != 1 || we.Invalid[0] != "a.test" {
		t.Fatalf("a's cosignature of size 7 on size 8: %v", err)
	}
}

// TestClientRechecksAge: a tlog.Client requiring a fresh policy accepts a
// cosigned checkpoint of a real log, and refuses the very same bytes once
// its cosignatures are too old (the client's shortcut for the newest
// checkpoint it verified asks the policy again), while Trust of those
// bytes (a kept floor) still passes.
func TestClientRechecksAge(t *testing.T) {
	ctx := context.Background()
	skey, _, err := tlog.GenerateKey("log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := tlog.Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, err := l.Append(ctx, []byte("entry")); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := newTimedCosigner(t, "w.test")
	base, err := NewPolicy(1, w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	p, err := base.WithFreshness(Freshness{MaxAge: 30 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	raw := cosign(t, cp.Raw, w.line(t, cp.Raw, clk.now))
	c := tlog.NewClient(dir, k.Verifier)
	c.Require(p)
	if _, err := c.VerifyCheckpoint(ctx, raw); err != nil {
		t.Fatal(err)
	}
	clk.now = clk.now.Add(time.Hour)
	if _, err := c.VerifyCheckpoint(ctx, raw); !errors.Is(err, ErrStale) {
		t.Fatalf("the same checkpoint an hour later: %v, want ErrStale", err)
	}
	if _, err := c.Trust(ctx, raw); err != nil {
		t.Fatalf("Trust of the kept checkpoint: %v", err)
	}
	if _, err := c.VerifyCheckpoint(ctx, cp.Raw); !errors.Is(err, ErrNotWitnessed) {
		t.Fatalf("without the cosignature: %v", err)
	}
}

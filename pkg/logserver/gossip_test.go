package logserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	f_note "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// runsJSON is what `kubectl get taskruns -o json` prints for runs annotated
// with the given checkpoints (name -> note).
func runsJSON(t *testing.T, cps map[string][]byte) []byte {
	t.Helper()
	var items []map[string]any
	for name, cp := range cps {
		items = append(items, map[string]any{"kind": "TaskRun", "metadata": map[string]any{"namespace": "team", "name": name,
			"annotations": map[string]string{GossipAnnotation: string(cp), "stepseal.dev/log-index": "1"}}})
	}
	items = append(items, map[string]any{"kind": "TaskRun", "metadata": map[string]any{"namespace": "team", "name": "unsigned"}})
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCompareGossip: a log showing the monitor tree A while it showed a
// controller tree B (same key and origin) is caught from the runs'
// annotations — B of the same size is a fork, B smaller with other entries
// is inconsistent, B larger than what the monitor sees is a rollback or
// split view; honest gossip agrees, a forged note is a bad checkpoint, and
// another log's checkpoint is set aside.
func TestCompareGossip(t *testing.T) {
	a := newFixture(t, nil)
	b := &fixture{dir: t.TempDir(), key: a.key, signer: a.signer}
	b.start(t, nil)
	other := newFixture(t, nil)
	add := func(f *fixture, run string, i int) []byte {
		t.Helper()
		v, err := f.client.Add(ctx, provenance(t, f.signer, run, docName(i)))
		if err != nil {
			t.Fatal(err)
		}
		return v.Checkpoint.Raw
	}
	honest := add(a, "run", 0)
	add(a, "run", 1)
	add(b, "other", 0)
	sameSize := add(b, "other", 1)
	add(b, "other", 2)
	bigger := add(b, "other", 3)
	otherKey := add(other, "x", 0) // same origin, another key
	skey, _, err := tlog.GenerateKey("example.com/another-log")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tlog.Open(ctx, t.TempDir(), k, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, err := l.Append(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	ocp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	otherLog := ocp.Raw
	// The honest note with its size changed: the signature no longer holds.
	forged := bytes.Replace(honest, []byte("\n1\n"), []byte("\n2\n"), 1)

	gossip, err := ParseGossip(runsJSON(t, map[string][]byte{"honest": honest, "fork": sameSize, "ahead": bigger, "foreign": otherLog, "forged": forged, "other-key": otherKey}))
	if err != nil {
		t.Fatal(err)
	}
	if len(gossip) != 6 {
		t.Fatalf("%d checkpoints gossiped, want 6 (the unsigned run has none)", len(gossip))
	}
	cp, err := a.client.Log().Checkpoint(ctx)
	if err != nil || cp.Size != 2 {
		t.Fatalf("A: %v %v", cp, err)
	}
	got := map[string]GossipChecked{}
	for _, g := range CompareGossip(ctx, a.client, cp, gossip) {
		got[g.From] = g
	}
	if g := got["TaskRun team/honest"]; g.Err() != nil || g.Size != 1 {
		t.Errorf("honest: %+v", g)
	}
	if g := got["TaskRun team/fork"]; !errors.Is(g.Err(), tlog.ErrFork) {
		t.Errorf("same size, other root: %+v", g)
	}
	if g := got["TaskRun team/ahead"]; !errors.Is(g.Err(), tlog.ErrRollback) || g.Size != 4 {
		t.Errorf("larger than the monitor's tree: %+v", g)
	}
	if g := got["TaskRun team/forged"]; !errors.Is(g.Err(), tlog.ErrBadCheckpoint) {
		t.Errorf("forged note: %+v", g)
	}
	if g := got["TaskRun team/other-key"]; !errors.Is(g.Err(), tlog.ErrBadCheckpoint) {
		t.Errorf("same origin, another key: %+v", g)
	}
	if g := got["TaskRun team/foreign"]; g.Err() != nil || !g.OtherLog {
		t.Errorf("another log: %+v", g)
	}

	// B smaller than A's tree but with other entries: not extended by A.
	c, _ := NewClient(a.http.URL, a.key.Verifier, nil)
	add(a, "run", 2)
	cp3, err := c.Log().Checkpoint(ctx)
	if err != nil || cp3.Size != 3 {
		t.Fatalf("A: %v %v", cp3, err)
	}
	for _, g := range CompareGossip(ctx, c, cp3, []Gossip{{From: "fork", Raw: sameSize}}) {
		if !errors.Is(g.Err(), tlog.ErrConsistency) {
			t.Errorf("smaller fork: %+v", g)
		}
	}
	// Alone, a monitor of either view passes: without gossip (or
	// witnesses) the split view is not visible to it, as documented.
	for _, f := range []*fixture{a, b} {
		c, _ := NewClient(f.http.URL, a.key.Verifier, nil)
		if _, err := Monitor(ctx, c, nil); err != nil {
			t.Errorf("monitor of %s alone: %v", f.http.URL, err)
		}
	}
	if _, err := ParseGossip([]byte("not json")); !errors.Is(err, ErrDocument) {
		t.Errorf("bad input: %v", err)
	}
}

func FuzzParseGossip(f *testing.F) {
	f.Add([]byte(`{"kind":"List","items":[{"metadata":{"name":"a","annotations":{"stepseal.dev/log-checkpoint":"x\n1\nAA==\n"}}}]}`))
	f.Add([]byte(`{"metadata":{"annotations":null}}`))
	f.Add([]byte(`{"items":[1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseGossip(data)
	})
}

// cosignNow adds a C2SP cosignature/v1 line of w (dated now, as
// omniwitness dates them) to raw, a checkpoint the log signed.
func cosignNow(t *testing.T, raw []byte, v note.Verifier, w note.Signer) []byte {
	t.Helper()
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	out, err := note.Sign(n, w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGossipAgainstWitnessPolicy: a monitor requiring witness cosignatures
// does not take a gossiped checkpoint that lacks them as evidence either
// way: it is reported unverifiable (ErrGossipUnverifiable, "could not
// check", not a refusal) and not compared, even when it conflicts with the
// monitor's tree. A cosigned one is compared as before: honest gossip
// agrees, a cosigned fork is tlog.ErrFork naming both checkpoints. The
// cosignatures' age does not matter for gossip (the run recorded it when
// it logged), even under a policy with a Freshness.
func TestGossipAgainstWitnessPolicy(t *testing.T) {
	a := newFixture(t, nil)
	b := &fixture{dir: t.TempDir(), key: a.key, signer: a.signer}
	b.start(t, nil)
	wskey, wvkey, err := note.GenerateKey(nil, "witness-1.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	w, err := f_note.NewSignerForCosignatureV1(wskey)
	if err != nil {
		t.Fatal(err)
	}
	base, err := witness.NewPolicy(1, wvkey)
	if err != nil {
		t.Fatal(err)
	}
	// Cosignatures made now count as an hour old for this monitor.
	policy, err := base.WithFreshness(witness.Freshness{MaxAge: time.Minute, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	add := func(f *fixture, run string, i int) []byte {
		t.Helper()
		v, err := f.client.Add(ctx, provenance(t, f.signer, run, docName(i)))
		if err != nil {
			t.Fatal(err)
		}
		return v.Checkpoint.Raw
	}
	honest := add(a, "run", 0)
	add(a, "run", 1)
	add(b, "other", 0)
	fork := add(b, "other", 1) // same size as A's tree, other root

	cp, err := a.client.Log().Checkpoint(ctx)
	if err != nil || cp.Size != 2 {
		t.Fatalf("A: %v %v", cp, err)
	}
	c, err := NewClient(a.http.URL, a.key.Verifier, nil, WithWitnesses(policy))
	if err != nil {
		t.Fatal(err)
	}
	gossip := []Gossip{
		{From: "TaskRun team/honest-uncosigned", Raw: honest},
		{From: "TaskRun team/fork-uncosigned", Raw: fork},
		{From: "TaskRun team/honest", Raw: cosignNow(t, honest, a.key.Verifier, w)},
		{From: "TaskRun team/fork", Raw: cosignNow(t, fork, a.key.Verifier, w)},
	}
	got := map[string]GossipChecked{}
	for _, g := range CompareGossip(ctx, c, cp, gossip) {
		got[g.From] = g
	}
	for _, name := range []string{"TaskRun team/honest-uncosigned", "TaskRun team/fork-uncosigned"} {
		g := got[name]
		err := g.Err()
		if !g.Unverifiable || !errors.Is(err, ErrGossipUnverifiable) || !errors.Is(err, reject.ErrUnableToCheck) ||
			errors.Is(err, reject.ErrRefused) || errors.Is(err, tlog.ErrFork) || errors.Is(err, witness.ErrNotWitnessed) {
			t.Errorf("%s: %+v, want ErrGossipUnverifiable only", name, g)
		}
		for _, m := range []string{name, "1 of [witness-1.stepseal.test]", "0 valid cosignatures"} {
			if !strings.Contains(g.Error, m) {
				t.Errorf("%s: error %q does not name %q", name, g.Error, m)
			}
		}
	}
	if g := got["TaskRun team/honest"]; g.Err() != nil || g.Size != 1 {
		t.Errorf("honest cosigned gossip: %+v", g)
	}
	g := got["TaskRun team/fork"]
	fcp, _ := tlog.ParseCheckpoint(fork, a.key.Verifier)
	if !errors.Is(g.Err(), tlog.ErrFork) || !strings.Contains(g.Error, fcp.String()) || !strings.Contains(g.Error, cp.String()) {
		t.Errorf("cosigned fork: %+v, want tlog.ErrFork naming %s and %s", g, fcp, cp)
	}
	// Refusals sort first, then what could not be checked.
	out := CompareGossip(ctx, c, cp, gossip)
	if !errors.Is(out[0].Err(), tlog.ErrFork) || !out[1].Unverifiable || !out[2].Unverifiable || out[3].Err() != nil {
		t.Errorf("order: %+v", out)
	}
	// Without a policy the uncosigned fork is compared: a fork.
	for _, g := range CompareGossip(ctx, a.client, cp, gossip[1:2]) {
		if !errors.Is(g.Err(), tlog.ErrFork) || g.Unverifiable {
			t.Errorf("no policy: %+v", g)
		}
	}
}

package logserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/internal/witnesstest"
	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// cosignedFixture is a served log whose checkpoints a real witness
// cosigns.
type cosignedFixture struct {
	dir    string
	key    tlog.Key
	vkey   string
	signer signing.Signer
	w      witnesstest.Witness
	policy *witness.Policy
	srv    *Server
	http   *httptest.Server
}

func newCosignedFixture(t *testing.T) *cosignedFixture {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey("log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &cosignedFixture{dir: t.TempDir(), key: key, vkey: vkey, signer: signingtest.SignerOf(t, signing.ED25519)}
	f.w = witnesstest.Start(t, "witness-1.stepseal.test", vkey)
	f.policy, err = witness.ParsePolicy([]byte(fmt.Sprintf("witness w1 %s %s\nquorum w1\n", f.w.VKey, f.w.URL)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *cosignedFixture) open(t *testing.T, dir string) {
	t.Helper()
	srv, err := Open(ctx, dir, f.key, Options{Keys: Keys{signingtest.Verifier(t, f.signer)}, Witnesses: f.policy, WitnessTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.http = srv, httptest.NewServer(srv.Handler())
	t.Cleanup(f.close)
}

// close stops the server; a fork's appends that no checkpoint will ever
// cover would hold Tessera's shutdown for its full timeout, so it is cut
// short.
func (f *cosignedFixture) close() {
	if f.srv == nil {
		return
	}
	f.http.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	f.srv.Close(cctx)
	f.srv = nil
}

func (f *cosignedFixture) client(t *testing.T, p *witness.Policy) *Client {
	t.Helper()
	c, err := NewClient(f.http.URL, f.key.Verifier, nil, WithWitnesses(p))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantNotWitnessed checks err is the typed refusal naming what it must.
func wantNotWitnessed(t *testing.T, err error, mention ...string) {
	t.Helper()
	var we *witness.Error
	if !errors.Is(err, witness.ErrNotWitnessed) || !errors.Is(err, reject.ErrThreshold) || !errors.Is(err, reject.ErrRefused) || !errors.As(err, &we) {
		t.Fatalf("got %v, want witness.ErrNotWitnessed (reject.ErrThreshold)", err)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// TestWitnessCosignsServedLog: a real omniwitness cosigns every checkpoint
// the server publishes; a client requiring it accepts, one requiring
// another witness refuses, and forged cosignatures are refused.
func TestWitnessCosignsServedLog(t *testing.T) {
	f := newCosignedFixture(t)
	f.open(t, f.dir)
	c := f.client(t, f.policy)

	var cps [][]byte
	for i := range 3 {
		v, err := c.Add(ctx, provenance(t, f.signer, "run-w", docName(i)))
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		cps = append(cps, v.Checkpoint.Raw)
	}
	last := cps[2]
	if !bytes.Contains(last, []byte("— "+f.w.Name+" ")) {
		t.Fatalf("checkpoint carries no cosignature of %s:\n%s", f.w.Name, last)
	}
	// Every read path of the client checks it: get, search, the tiles'
	// checkpoint.
	if _, err := c.Get(ctx, store.Digest(provenance(t, f.signer, "run-w", docName(0)))); err != nil {
		t.Fatalf("get: %v", err)
	}
	if _, err := c.Search(ctx, Query{Subject: subject(docName(1))}, 0, 0); err != nil {
		t.Fatalf("search: %v", err)
	}
	if _, err := c.Log().Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	// Threshold 1 given as a key, the way the CLI's --witness-key does.
	byKey, err := witness.NewPolicy(1, f.w.VKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client(t, byKey).Search(ctx, Query{Subject: subject(docName(2))}, 0, 0); err != nil {
		t.Fatalf("search with --witness-key policy: %v", err)
	}

	t.Run("another witness required", func(t *testing.T) {
		_, otherV, err := note.GenerateKey(rand.Reader, "witness-2.stepseal.test")
		if err != nil {
			t.Fatal(err)
		}
		p, err := witness.NewPolicy(1, otherV)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.client(t, p).Search(ctx, Query{Subject: subject(docName(1))}, 0, 0)
		wantNotWitnessed(t, err, "0 valid cosignatures", "witness-2.stepseal.test")
		// Two required of the one the log uses and another: one is not enough.
		p2, err := witness.NewPolicy(2, f.w.VKey, otherV)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.client(t, p2).Log().Checkpoint(ctx)
		wantNotWitnessed(t, err, "1 valid cosignatures (witness-1.stepseal.test)", "2 of [")
		// verify --from: the run is found through verified searches.
		_, err = OpenRun(ctx, f.http.URL, f.vkey, "", subject(docName(1)), nil, WithWitnesses(p))
		wantNotWitnessed(t, err, "witness-2.stepseal.test")
		if r, err := OpenRun(ctx, f.http.URL, f.vkey, "", subject(docName(1)), nil, WithWitnesses(f.policy)); err != nil || r.RunID != "run-w" {
			t.Fatalf("OpenRun with the log's witness: %v", err)
		}
	})

	// A man in the middle rewrites the checkpoint of a real answer.
	a, err := f.srv.Entry(ctx, store.Digest(provenance(t, f.signer, "run-w", docName(2))))
	if err != nil {
		t.Fatal(err)
	}
	body, sigs := splitNote(t, last)
	logLine, witnessLine := sigs[0], sigs[1]
	if !strings.Contains(witnessLine, f.w.Name) {
		logLine, witnessLine = witnessLine, logLine
	}
	forge := func(t *testing.T, raw []byte, mention ...string) {
		t.Helper()
		fa := a
		fa.Checkpoint = raw
		_, err := f.client(t, f.policy).VerifyAnswer(ctx, fa, a.Digest)
		wantNotWitnessed(t, err, mention...)
	}
	t.Run("no cosignature", func(t *testing.T) {
		forge(t, []byte(body+"\n"+logLine), "0 valid")
	})
	t.Run("wrong key under the witness's name", func(t *testing.T) {
		other, _, err := note.GenerateKey(rand.Reader, f.w.Name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(other)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := note.Sign(&note.Note{Text: body}, s)
		if err != nil {
			t.Fatal(err)
		}
		_, osigs := splitNote(t, signed)
		forge(t, []byte(body+"\n"+logLine+osigs[0]), "0 valid")
	})
	t.Run("altered signature", func(t *testing.T) {
		fields := strings.Fields(witnessLine)
		sig, err := base64.StdEncoding.DecodeString(fields[2])
		if err != nil {
			t.Fatal(err)
		}
		sig[len(sig)-1] ^= 1
		forge(t, []byte(body+"\n"+logLine+"— "+fields[1]+" "+base64.StdEncoding.EncodeToString(sig)+"\n"),
			"do not verify: witness-1.stepseal.test")
	})
	t.Run("cosignature of another checkpoint", func(t *testing.T) {
		_, first := splitNote(t, cps[0])
		var earlier string
		for _, l := range first {
			if strings.Contains(l, f.w.Name) {
				earlier = l
			}
		}
		forge(t, []byte(body+"\n"+logLine+earlier), "do not verify: witness-1.stepseal.test")
	})
}

// TestWitnessRefusesForkedLog: the log's directory is rolled back to an
// earlier copy and grows other entries; the real witness, which cosigned
// the longer tree, refuses every checkpoint of the fork, so the server
// publishes none: it keeps serving its last cosigned checkpoint, writers
// get ErrWitness at once naming the witness's answer, and /v1/witness
// reports it.
func TestWitnessRefusesForkedLog(t *testing.T) {
	f := newCosignedFixture(t)
	f.open(t, f.dir)
	c := f.client(t, f.policy)
	if _, err := c.Add(ctx, provenance(t, f.signer, "run-f", docName(0))); err != nil {
		t.Fatal(err)
	}
	f.close()
	fork := t.TempDir()
	if out, err := exec.Command("cp", "-a", f.dir+"/.", fork).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	f.open(t, f.dir)
	c = f.client(t, f.policy)
	for i := 1; i < 3; i++ {
		if _, err := c.Add(ctx, provenance(t, f.signer, "run-f", docName(i))); err != nil {
			t.Fatal(err)
		}
	}
	f.close()

	f.open(t, fork) // the rolled-back copy: one entry, cosigned
	before := f.srv.Checkpoint()
	if before.Size != 1 {
		t.Fatalf("fork starts at %d entries", before.Size)
	}
	fc := f.client(t, f.policy)
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, err := fc.Add(ctx, provenance(t, f.signer, "run-fork", docName(10+i)))
		if err == nil {
			t.Fatalf("fork append %d published", i)
		}
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), ErrWitness.Error()) || !strings.Contains(err.Error(), "witness at ") {
			t.Fatalf("fork append %d: %v, want the witness's refusal", i, err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("fork append %d took %v: the refusal should cut the wait short", i, d)
		}
		t.Logf("fork append %d refused after %v: %v", i, time.Since(start).Round(time.Millisecond), err)
	}
	// The server keeps its last cosigned checkpoint, and says why.
	cp, err := fc.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatalf("the fork's published checkpoint: %v", err)
	}
	if cp.Size != before.Size || !bytes.Equal(cp.Raw, before.Raw) {
		t.Fatalf("fork published %s, want the old %s", cp, before)
	}
	resp, err := http.Get(f.http.URL + "/v1/witness")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st WitnessStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Published != 1 || st.Refusal == "" || st.RefusedSize < 2 {
		t.Fatalf("witness status %+v: want published 1 and the refusal", st)
	}
	t.Logf("witness status: %+v", st)
}

func splitNote(t *testing.T, raw []byte) (body string, sigs []string) {
	t.Helper()
	i := bytes.LastIndex(raw, []byte("\n\n"))
	if i < 0 {
		t.Fatalf("not a note: %q", raw)
	}
	body = string(raw[:i+1])
	for _, l := range strings.SplitAfter(string(raw[i+2:]), "\n") {
		if l != "" {
			sigs = append(sigs, l)
		}
	}
	return body, sigs
}

// TestWitnessWatchKofN: one witness refusing a checkpoint cancels no
// append while the others can still satisfy a 2-of-3 policy; the second
// refusal makes it unsatisfiable and signals the appends, naming both.
func TestWitnessWatchKofN(t *testing.T) {
	var lines []string
	for i := range 3 {
		_, v, err := note.GenerateKey(rand.Reader, fmt.Sprintf("w%d.test", i))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("witness w%d %s http://127.0.0.%d/", i, v, i+1))
	}
	p, err := witness.ParsePolicy([]byte(strings.Join(lines, "\n") + "\ngroup g 2 w0 w1 w2\nquorum g\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := newWitnessWatch(p.Group())
	ch := w.changed
	w.refuse("http://127.0.0.1/add-checkpoint", 7, errors.New("w0 says 422"))
	select {
	case <-ch:
		t.Fatal("one refusal of three signalled the appends")
	default:
	}
	w.refuse("http://127.0.0.2/add-checkpoint", 7, errors.New("w1 says 404"))
	select {
	case <-ch:
	default:
		t.Fatal("two refusals of a 2-of-3 policy did not signal the appends")
	}
	if !errors.Is(w.refusal, ErrWitness) || !strings.Contains(w.refusal.Error(), "w0 says 422") || !strings.Contains(w.refusal.Error(), "w1 says 404") || w.refSize != 7 {
		t.Errorf("refusal %v (size %d)", w.refusal, w.refSize)
	}
}

// TestWitnessCosignatureFreshness: with a real witness, a client that
// counts only cosignatures newer than 2 s accepts the log's answers while
// they are, refuses the same checkpoint (served again, unchanged, by the
// log) once its cosignature is older — witness.ErrStale, naming the
// witness and the age — and accepts the next append's newly cosigned
// checkpoint; a client with StaleWarn accepts the old one and is warned;
// the same checkpoint kept as a floor (Trust) is not judged on its age.
func TestWitnessCosignatureFreshness(t *testing.T) {
	f := newCosignedFixture(t)
	f.open(t, f.dir)
	fresh, err := f.policy.WithFreshness(witness.Freshness{MaxAge: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	warn, err := f.policy.WithFreshness(witness.Freshness{MaxAge: 2 * time.Second, Stale: witness.StaleWarn, Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	c := f.client(t, fresh)
	doc := provenance(t, f.signer, "run-fresh", docName(0))
	v, err := c.Add(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, store.Digest(doc)); err != nil {
		t.Fatalf("get while the cosignature is fresh: %v", err)
	}
	time.Sleep(3500 * time.Millisecond)
	_, err = c.Get(ctx, store.Digest(doc))
	var we *witness.Error
	if !errors.Is(err, witness.ErrStale) || !errors.Is(err, reject.ErrExpired) || errors.Is(err, witness.ErrNotWitnessed) || !errors.As(err, &we) {
		t.Fatalf("get of the same checkpoint 3.5 s later: %v, want witness.ErrStale", err)
	}
	if len(we.Stale) != 1 || !strings.HasPrefix(we.Stale[0], f.w.Name+" (") || !strings.Contains(err.Error(), "older than 2s") {
		t.Errorf("stale error names %v: %v", we.Stale, err)
	}
	if _, err := f.client(t, fresh).Log().Checkpoint(ctx); !errors.Is(err, witness.ErrStale) {
		t.Errorf("the tiles' checkpoint: %v, want witness.ErrStale", err)
	}
	if _, err := f.client(t, fresh).Log().Trust(ctx, v.Checkpoint.Raw); err != nil {
		t.Errorf("the checkpoint kept as a floor: %v", err)
	}
	if _, err := f.client(t, warn).Get(ctx, store.Digest(doc)); err != nil || len(warnings) == 0 || !strings.Contains(warnings[0], f.w.Name) {
		t.Errorf("warn: %v, warnings %q", err, warnings)
	}
	// The next append is cosigned now: accepted again.
	if _, err := c.Add(ctx, provenance(t, f.signer, "run-fresh", docName(1))); err != nil {
		t.Fatalf("append after the stale checkpoint: %v", err)
	}
	if _, err := c.Get(ctx, store.Digest(doc)); err != nil {
		t.Fatalf("get with the new checkpoint: %v", err)
	}
}

// TestWitnessRefusesForeignKey: a log signing with another key under the
// witnessed log's origin (a stolen name, not the key) gets no cosignature
// for the checkpoint Tessera publishes on start, so the server does not
// start, with ErrWitness naming the witness's answer, and nothing is
// published.
// C2SP tlog-witness says 403 for a checkpoint without a valid signature of
// the log's key; omniwitness at the pinned version answers 500 (its
// signature check's error is not its ErrNoValidSignature), which this test
// pins so that a change of the witness's answer is seen.
func TestWitnessRefusesForeignKey(t *testing.T) {
	f := newCosignedFixture(t)
	skey, _, err := tlog.GenerateKey(f.key.Verifier.Name())
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = Open(ctx, dir, other, Options{Keys: Keys{signingtest.Verifier(t, f.signer)}, Witnesses: f.policy, WitnessTimeout: 10 * time.Second})
	if !errors.Is(err, ErrWitness) || !errors.Is(err, reject.ErrUnableToCheck) || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "witness at ") {
		t.Fatalf("a log under another key: %v, want ErrWitness naming the witness's answer", err)
	}
	// Nothing was published: no checkpoint of the foreign key exists to
	// show a client (tlog.ErrBadCheckpoint for one that did is
	// TestManInTheMiddleOnSearch's and TestCompareGossip's).
	if _, err := os.Stat(filepath.Join(dir, "log", "checkpoint")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a checkpoint was published without the witness: %v", err)
	}
}

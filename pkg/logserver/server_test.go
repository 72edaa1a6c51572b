package logserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

func TestAddGetSearch(t *testing.T) {
	f := newFixture(t, nil)
	prov := provenance(t, f.signer, "run-1", "image-a", "image-b")
	lk := link(t, f.signer, "run-1", "build", "image-a", "out.txt")

	v, err := f.client.Add(ctx, prov)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Created || v.Index != 0 || v.Entry.Kind != store.KindProvenance || v.Entry.RunID != "run-1" || len(v.Entry.Subjects) != 2 || !bytes.Equal(v.Entry.Data, prov) {
		t.Fatalf("provenance answer: %+v", v)
	}
	v, err = f.client.Add(ctx, lk)
	if err != nil {
		t.Fatal(err)
	}
	if v.Index != 1 || v.Entry.Kind != store.KindLink || !strings.HasPrefix(v.Entry.Name, "build.") || v.Entry.RunID != "run-1" {
		t.Fatalf("link answer: %+v", v.Entry)
	}
	g, err := f.client.Get(ctx, store.Digest(prov))
	if err != nil || g.Index != 0 || !bytes.Equal(g.Entry.Data, prov) {
		t.Fatalf("Get: %+v %v", g.Entry, err)
	}
	if _, err := f.client.Get(ctx, store.Digest([]byte("nothing"))); !errors.Is(err, ErrNotFound) || !errors.Is(err, reject.ErrRefused) {
		t.Fatalf("Get of an absent digest: %v", err)
	}
	for _, c := range []struct {
		q    Query
		want []uint64
	}{
		{Query{Subject: subject("image-a")}, []uint64{0, 1}},
		{Query{Subject: subject("image-b")}, []uint64{0}},
		{Query{Subject: subject("out.txt"), Kind: store.KindProvenance}, nil},
		{Query{Kind: store.KindLink}, []uint64{1}},
		{Query{RunID: "run-1"}, []uint64{0, 1}},
		{Query{RunID: "run-2"}, nil},
		{Query{}, []uint64{0, 1}},
	} {
		var got []uint64
		if _, err := f.client.SearchAll(ctx, c.q, 0, 1, func(r VerifiedResult) error {
			got = append(got, r.Index)
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%s: %v, want %v", c.q, got, c.want)
		}
	}
	// The C2SP tlog-proof file verifies with the record alone.
	resp, err := http.Get(f.http.URL + "/v1/entries/" + store.Digest(lk) + "?format=tlog-proof")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	idx, hashes, cpRaw, err := ParseTLogProof(raw)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := tlog.ParseCheckpoint(cpRaw, f.key.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.VerifyInclusionProof(v.Answer.Record, idx, cp, hashes); err != nil {
		t.Fatal(err)
	}
	// Tiles are served: a tlog client over HTTP verifies every entry.
	c, _ := f.client.Log().Checkpoint(ctx)
	n := 0
	if err := f.client.Log().Audit(ctx, c, 0, func(uint64, []byte) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("audit over HTTP: %d entries, %v", n, err)
	}
	if rep, err := Audit(ctx, f.client, filepath.Join(t.TempDir(), "audit.db"), nil); err != nil || rep.Entries != 2 || rep.Queries != 5 {
		t.Fatalf("Audit: %+v %v", rep, err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	f := newFixture(t, nil)
	const clients, perClient = 64, 6
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	indexes := make(chan uint64, clients*perClient)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				doc := provenance(t, f.signer, fmt.Sprintf("run-%d", c), docName(c*perClient+i), "shared-base")
				v, err := f.client.Add(ctx, doc)
				if err != nil {
					errs <- err
					return
				}
				indexes <- v.Index
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(indexes)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for i := range indexes {
		if seen[i] {
			t.Fatalf("index %d answered twice", i)
		}
		seen[i] = true
	}
	n := 0
	if _, err := f.client.SearchAll(ctx, Query{Subject: subject("shared-base")}, 0, MaxLimit, func(VerifiedResult) error { n++; return nil }); err != nil || n != clients*perClient {
		t.Fatalf("search: %d results, %v", n, err)
	}
	if _, err := Audit(ctx, f.client, filepath.Join(t.TempDir(), "audit.db"), []Query{{Subject: subject("shared-base")}, {RunID: "run-3"}}); err != nil {
		t.Fatal(err)
	}
}

func TestSameDocumentOnce(t *testing.T) {
	f := newFixture(t, nil)
	doc := provenance(t, f.signer, "run-1", "image")
	const writers = 16
	answers := make([]Verified, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f.client.Add(ctx, doc)
			if err != nil {
				t.Error(err)
			}
			answers[i] = v
		}()
	}
	wg.Wait()
	for _, a := range answers {
		if a.Index != answers[0].Index || !bytes.Equal(a.Answer.Record, answers[0].Answer.Record) {
			t.Fatalf("answers differ: %d and %d", a.Index, answers[0].Index)
		}
	}
	if cp := f.srv.Checkpoint(); cp.Size != 1 {
		t.Fatalf("%d leaves for one document", cp.Size)
	}
	// After a restart, the same document still answers its index.
	f.stop()
	f.start(t, nil)
	v, err := f.client.Add(ctx, doc)
	if err != nil || v.Index != answers[0].Index || v.Created {
		t.Fatalf("after restart: %+v %v", v.Index, err)
	}
	if cp := f.srv.Checkpoint(); cp.Size != 1 {
		t.Fatalf("%d leaves after restart", cp.Size)
	}
}

// treeDigest hashes the log's public files (checkpoint, tiles, bundles).
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(filepath.Join(dir, "log"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %x\n", p, sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func post(t *testing.T, url, ctype string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/entries", bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func TestBadWritesLeaveTheTree(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.client.Add(ctx, provenance(t, f.signer, "run-1", "image")); err != nil {
		t.Fatal(err)
	}
	before := treeDigest(t, f.dir)
	other := signingtest.SignerOf(t, signing.ED25519)
	good := provenance(t, f.signer, "run-2", "image-2")
	var env, other2 map[string]any
	json.Unmarshal(good, &env)
	json.Unmarshal(provenance(t, f.signer, "run-2", "image-evil"), &other2)
	env["payload"] = other2["payload"] // another statement under the first one's signature
	tampered, _ := json.Marshal(env)
	unsigned := bytes.Replace(good, []byte(`"signatures":[`), []byte(`"signatures":[],"x":[`), 1)
	lk := link(t, f.signer, "run-2", "build", "a.out")
	forged := bytes.Replace(lk, []byte(sha("a.out")), []byte(sha("evil")), 1)
	unknownField := bytes.Replace(lk, []byte(`"_type":"link"`), []byte(`"_type":"link","subjects":["x"]`), 1)
	many := make([]string, MaxSubjects+1)
	for i := range many {
		many[i] = fmt.Sprint("s", i)
	}
	for _, c := range []struct {
		name   string
		ctype  string
		body   []byte
		status int
		want   error
	}{
		{"empty", "application/json", nil, 400, ErrDocument},
		{"not JSON", "application/json", []byte("{not json"), 400, ErrDocument},
		{"JSON array", "application/json", []byte("[1,2]"), 400, ErrDocument},
		{"neither envelope nor Metablock", "application/json", []byte(`{"a":1}`), 400, ErrDocument},
		{"oversized", "application/json", bytes.Repeat([]byte("a"), MaxDocumentSize+1), 413, ErrDocument},
		{"wrong content type", "text/plain", good, 415, ErrDocument},
		{"too many subjects", "application/json", provenance(t, f.signer, "r", many...), 400, ErrDocument},
		{"unsigned envelope", "application/json", unsigned, 400, ErrDocument},
		{"payload not signed", "application/json", tampered, 403, ErrNotAllowed},
		{"signed by a key not allowed", "application/json", provenance(t, other, "run-2", "image-2"), 403, ErrNotAllowed},
		{"link signed by a key not allowed", "application/json", link(t, other, "run-2", "build", "a.out"), 403, ErrNotAllowed},
		{"link product changed after signing", "application/json", forged, 403, ErrNotAllowed},
		{"link with a field the signature does not cover", "application/json", unknownField, 400, ErrDocument},
	} {
		status, body := post(t, f.http.URL, c.ctype, c.body)
		if status != c.status {
			t.Errorf("%s: HTTP %d (%s), want %d", c.name, status, body, c.status)
		}
		if c.ctype == "application/json" && len(c.body) <= MaxDocumentSize {
			if _, err := f.client.Add(ctx, c.body); !errors.Is(err, c.want) {
				t.Errorf("%s: client error %v, want %v", c.name, err, c.want)
			}
		}
	}
	if after := treeDigest(t, f.dir); after != before {
		t.Fatal("a refused write changed the log's files")
	}
	if n := searchCount(t, f.client, Query{Subject: subject("evil")}); n != 0 {
		t.Fatalf("poisoned subject found %d times", n)
	}
}

func searchCount(t *testing.T, c *Client, q Query) int {
	t.Helper()
	n := 0
	if _, err := c.SearchAll(ctx, q, 0, MaxLimit, func(VerifiedResult) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSubjectsAreDerived: a writer cannot make the log index a document
// under a subject the document does not name; the statement's subjects
// are what the server indexes, whatever else the request says.
func TestSubjectsAreDerived(t *testing.T) {
	f := newFixture(t, nil)
	doc := provenance(t, f.signer, "run-1", "real")
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/v1/entries?subject="+subject("victim"), bytes.NewReader(doc))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Subject", subject("victim"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	if searchCount(t, f.client, Query{Subject: subject("victim")}) != 0 || searchCount(t, f.client, Query{Subject: subject("real")}) != 1 {
		t.Fatal("declared subject indexed")
	}
}

func sortedKeys(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestPushback: appends beyond MaxInFlight are 503 with Retry-After, and
// the client reports ErrBusy (no verdict); nothing is appended for them.
func TestPushback(t *testing.T) {
	f := newFixture(t, &Options{MaxInFlight: 1})
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy, ok := 0, 0
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.client.Add(ctx, provenance(t, f.signer, "run", docName(i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrBusy) && errors.Is(err, reject.ErrUnableToCheck):
				busy++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if busy == 0 || ok == 0 {
		t.Fatalf("%d accepted, %d pushed back", ok, busy)
	}
	if cp := f.srv.Checkpoint(); cp.Size != uint64(ok) {
		t.Fatalf("log of %d entries for %d accepted", cp.Size, ok)
	}
	rec := httptest.NewRecorder()
	writeError(rec, statusOf(ErrBusy), ErrBusy)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("pushback answer: %d %v", rec.Code, rec.Header())
	}
}

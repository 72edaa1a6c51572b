package seal_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

var ctx = context.Background()

func record() *run.Record {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	step := func(name, product, d string) run.Step {
		return run.Step{Name: name, Image: "golang:1.26", Command: []string{"go", "build"},
			Products: run.Artifacts{product: {"sha256": strings.Repeat(d, 64)}}, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	}
	return &run.Record{
		Pipeline: "go-build", RunID: "run-1", Source: run.SourceLocal, StartedAt: t0, FinishedAt: t0.Add(time.Minute),
		Tasks: []run.Task{{PipelineTask: "build", Steps: []run.Step{step("build.compile", "dist/hello", "b"), step("build.pack", "dist/hello.tgz", "c")}}},
	}
}

func signer(t *testing.T) signing.Signer {
	t.Helper()
	k, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNames(t *testing.T) {
	id := strings.Repeat("ab", 32)
	n := seal.LinkName("build.compile", id)
	if n != "build.compile.abababab.link" {
		t.Fatalf("LinkName = %s", n)
	}
	step, short, ok := seal.ParseLinkName(n)
	if !ok || step != "build.compile" || short != "abababab" {
		t.Fatalf("ParseLinkName(%s) = %q %q %v", n, step, short, ok)
	}
	for _, bad := range []string{"build.link", "x.abababab.json", "build.abab/bab.link", "buildabababab.link", "build.abc.link"} {
		if _, _, ok := seal.ParseLinkName(bad); ok {
			t.Errorf("ParseLinkName(%q) accepted", bad)
		}
	}
	if !seal.IsLinkOf(n, "build.compile") || seal.IsLinkOf(n, "build") || seal.IsLinkOf("build.compile.x.abababab.link", "build.compile") {
		t.Fatal("IsLinkOf")
	}
	tr := seal.TaskRunProvenanceName("ns", "a", id)
	pr := seal.PipelineRunProvenanceName("ns", "a", id)
	if tr != "ns/a.abababab.provenance" || pr != "ns/a.abababab.pipelinerun.provenance" {
		t.Fatalf("names %s %s", tr, pr)
	}
	// TaskRun names may hold dots: the provenance of "a.b" is not a's.
	cases := []struct {
		entry, name string
		want        bool
	}{
		{tr, "a", true},
		{pr, "a", false},
		{seal.TaskRunProvenanceName("ns", "a.b", id), "a", false},
		{seal.TaskRunProvenanceName("ns", "a.b", id), "a.b", true},
		{seal.TaskRunProvenanceName("other", "a", id), "a", false},
	}
	for _, c := range cases {
		if got := seal.IsTaskRunProvenanceOf(c.entry, "ns", c.name); got != c.want {
			t.Errorf("IsTaskRunProvenanceOf(%s, ns, %s) = %v", c.entry, c.name, got)
		}
	}
}

// recorder is a store that remembers the order of Puts.
type recorder struct {
	store.Store
	mu    sync.Mutex
	order []string
	fail  string
}

func (r *recorder) Put(ctx context.Context, e store.Entry) (string, error) {
	if e.Name == r.fail {
		return "", errors.New("disk full")
	}
	r.mu.Lock()
	r.order = append(r.order, e.Name)
	r.mu.Unlock()
	return r.Store.Put(ctx, e)
}

func openLog(t *testing.T) *tlogstore.Store {
	t.Helper()
	skey, _, err := tlog.GenerateKey("seal.test")
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlogstore.Open(ctx, t.TempDir(), k, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(ctx) })
	return s
}

// An interrupted attempt's links and provenance are reused byte for byte,
// so a retry never stores a second, differently signed copy; what no
// longer matches the record is signed anew.
func TestRetryReusesWhatWasStored(t *testing.T) {
	rec := record()
	s := signer(t)
	log := openLog(t)
	links, err := seal.Links(ctx, rec, s, seal.Previous{})
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 2 || links[0].Subjects[0] != "sha256:"+strings.Repeat("b", 64) {
		t.Fatalf("links %+v", links)
	}
	st, err := attest.Provenance(rec, attest.ProvenanceOptions{BuilderID: "x", Links: seal.Digests(links)})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.KeyID()
	prov, err := seal.Provenance(ctx, st, seal.TaskRunProvenanceName("ns", "tr", id), rec.RunID, s, seal.Previous{}, false)
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt stored one link and died.
	if _, err := seal.Put(ctx, []seal.Target{{Name: "tlog", Store: log}}, links[:1]); err != nil {
		t.Fatal(err)
	}
	prev, err := seal.LoadPrevious(ctx, rec.RunID, []seal.Target{{Name: "tlog", Store: log}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := seal.Links(ctx, rec, s, prev)
	if err != nil {
		t.Fatal(err)
	}
	if string(again[0].Data) != string(links[0].Data) {
		t.Fatal("the stored link was signed again instead of reused")
	}
	// ed25519 is deterministic; ECDSA is not, so a fresh signature would differ.
	ek, _ := signing.Generate(signing.ECDSA)
	es, _ := signing.NewSigner(ek)
	e1, _ := seal.Link(ctx, rec, rec.Tasks[0].Steps[0], es, seal.Previous{})
	e2, _ := seal.Link(ctx, rec, rec.Tasks[0].Steps[0], es, seal.PreviousOf(e1))
	if string(e1.Data) != string(e2.Data) {
		t.Fatal("an ECDSA link was re-signed instead of reused")
	}
	changed := record()
	changed.Tasks[0].Steps[0].ExitCode = 1
	e3, _ := seal.Link(ctx, changed, changed.Tasks[0].Steps[0], es, seal.PreviousOf(e1))
	if string(e3.Data) == string(e1.Data) {
		t.Fatal("a stored link of a different record was reused")
	}
	p2, err := seal.Provenance(ctx, st, prov.Name, rec.RunID, es, seal.PreviousOf(prov), false)
	if err != nil || string(p2.Data) != string(prov.Data) {
		t.Fatalf("provenance not reused: %v", err)
	}
	if env, err := seal.Envelope(prov); err != nil || len(env.Signatures) != 1 {
		t.Fatalf("Envelope: %v", err)
	}
}

// The provenance is stored only after every link, in every target, and a
// failed link leaves no provenance behind.
func TestPutStoresProvenanceLast(t *testing.T) {
	rec := record()
	s := signer(t)
	links, _ := seal.Links(ctx, rec, s, seal.Previous{})
	st, _ := attest.Provenance(rec, attest.ProvenanceOptions{BuilderID: "x", Links: seal.Digests(links)})
	prov, _ := seal.Provenance(ctx, st, seal.LocalProvenanceName, rec.RunID, s, seal.Previous{}, true)
	entries := append(append([]store.Entry{}, links...), prov)

	r := &recorder{Store: openLog(t)}
	idx, err := seal.Put(ctx, []seal.Target{{Name: "plain", Store: r}, {Name: "log", Store: openLog(t)}}, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.order) != 3 || r.order[2] != seal.LocalProvenanceName {
		t.Fatalf("order %v", r.order)
	}
	if idx != "2" {
		t.Fatalf("log index of the provenance = %q, want 2 (the second target is the first indexed one)", idx)
	}
	r = &recorder{Store: openLog(t), fail: links[1].Name}
	if _, err := seal.Put(ctx, []seal.Target{{Name: "plain", Store: r}}, entries); err == nil || !strings.Contains(err.Error(), "backend plain: storing link "+links[1].Name) {
		t.Fatalf("err = %v", err)
	}
	for _, n := range r.order {
		if n == seal.LocalProvenanceName {
			t.Fatal("provenance stored although a link failed")
		}
	}
}

func TestLinkEntry(t *testing.T) {
	rec := record()
	e, err := seal.LinkEntry(rec, "build.pack.12345678.link", []byte("{}"))
	if err != nil || e.RunID != "run-1" || len(e.Subjects) != 1 || e.Subjects[0] != "sha256:"+strings.Repeat("c", 64) {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := seal.LinkEntry(rec, "notes.txt", nil); err == nil {
		t.Fatal("a non-link name was accepted")
	}
}

// A failed attempt's link is a link entry of the run; its subjects are the
// products its own link lists (the record holds only the last attempt).
func TestAttemptLinkEntry(t *testing.T) {
	data := []byte(`{"signed":{"_type":"link","name":"build.pack","products":{"dist/a":{"sha256":"` + strings.Repeat("d", 64) + `"}}},"signatures":[]}`)
	name := seal.AttemptLinkName("build.pack", "12345678abcdef", 1)
	e, err := seal.AttemptLinkEntry("run-1", name, data)
	if err != nil || e.Kind != store.KindLink || e.Name != name || e.RunID != "run-1" || len(e.Subjects) != 1 || e.Subjects[0] != "sha256:"+strings.Repeat("d", 64) {
		t.Fatalf("%+v %v", e, err)
	}
	if e, err := seal.AttemptLinkEntry("run-1", name, []byte("not json")); err != nil || len(e.Subjects) != 0 {
		t.Fatalf("unreadable link: %+v %v, want no subjects", e, err)
	}
	if _, err := seal.AttemptLinkEntry("run-1", "build.pack.12345678.link", data); err == nil {
		t.Fatal("a last attempt's link name was accepted as an attempt's")
	}
}

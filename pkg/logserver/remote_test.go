package logserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
)

// TestRemote: the served log as a store.Store — puts answer digest and index
// (the same index on a repeat), reads come back through verified searches,
// a writer whose declared kind is not what the server derives is refused,
// and an unknown digest is store.ErrNotFound.
func TestRemote(t *testing.T) {
	f := newFixture(t, nil)
	r := &Remote{Client: f.client}
	build, test := link(t, f.signer, "run-1", "build", "app"), link(t, f.signer, "run-1", "test")
	other := link(t, f.signer, "run-2", "build", "app")
	prov := provenance(t, f.signer, "run-1", "app")
	var idx []uint64
	for _, e := range []store.Entry{
		{Kind: store.KindLink, Name: "build.x.link", Data: build},
		{Kind: store.KindLink, Name: "test.x.link", Data: test},
		{Kind: store.KindLink, Name: "build.x.link", Data: other},
		{Kind: store.KindProvenance, Name: "taskrun.provenance.json", Data: prov},
	} {
		d, i, err := r.PutIndexed(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if d != store.Digest(e.Data) {
			t.Fatalf("digest %s, want %s", d, store.Digest(e.Data))
		}
		idx = append(idx, i)
	}
	if _, i, err := r.PutIndexed(ctx, store.Entry{Kind: store.KindLink, Name: "again", Data: build}); err != nil || i != idx[0] {
		t.Fatalf("repeat: index %d, %v; want %d", i, err, idx[0])
	}
	if _, err := r.Put(ctx, store.Entry{Kind: store.KindLayout, Name: "root.layout", Data: test}); !errors.Is(err, ErrAnswer) || !strings.Contains(err.Error(), "logged as a link") {
		t.Fatalf("declared kind not derived: %v", err)
	}

	links, err := r.List(ctx, store.Filter{Kind: store.KindLink, RunID: "run-1"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range links {
		names = append(names, e.Name)
	}
	if len(links) != 2 || !strings.Contains(strings.Join(names, " "), "build.") || !strings.Contains(strings.Join(names, " "), "test.") {
		t.Fatalf("links of run-1: %v", names)
	}
	got, err := r.Get(ctx, subject("app"))
	if err != nil || len(got) != 3 {
		t.Fatalf("entries naming app: %d, %v", len(got), err)
	}
	if _, err := r.Get(ctx, subject("nothing")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown subject: %v", err)
	}
	if _, err := r.Fetch(ctx, store.Digest([]byte("absent"))); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown digest: %v", err)
	}
	if e, err := r.Fetch(ctx, store.Digest(prov)); err != nil || e.Kind != store.KindProvenance || e.RunID != "run-1" {
		t.Fatalf("fetch provenance: %+v, %v", e.Kind, err)
	}
}

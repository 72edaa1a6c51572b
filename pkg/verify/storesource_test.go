package verify

import (
	"errors"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// Links read from a store verify as links read from a directory; links of
// another run in the same store are not read; a second, different link
// under one name is refused rather than one of them picked.
func TestVerifyFromStore(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	st, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(name, runID string, data []byte) {
		t.Helper()
		if _, err := st.Put(t.Context(), store.Entry{Kind: store.KindLink, Name: name, RunID: runID, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	for n, d := range links {
		put(n, "run-1", d)
	}
	// A link of another run, with a name the layout would count.
	other := newChain(t)
	other.runID = "run-2"
	_, otherLinks := other.build()
	for n, d := range otherLinks {
		if strings.HasPrefix(n, "build.compile.") {
			put(n, "run-2", d)
		}
	}
	owners := []signing.Verifier{verifier(t, "owner")}
	opts := Options{RunID: "run-1", WithoutArtifactUnsafe: true}
	v, err := Layout(t.Context(), layout, owners, &StoreLinks{Store: st, RunID: "run-1"}, opts)
	if err != nil || !v.Passed {
		t.Fatalf("links from the store: %v", err)
	}
	if _, err := Layout(t.Context(), layout, owners, &StoreLinks{Store: st}, opts); err == nil {
		t.Fatal("a store source without a run ID was accepted")
	}
	name := "fetch.copy." + keyID(t, "carol")[:8] + ".link"
	put(name, "run-1", append(append([]byte{}, links[name]...), ' '))
	// Two different links under one name (a matrix fan-out's TaskRuns, or
	// a copy): refused in the verdict, naming the step and the file —
	// waiting or retrying would not tell which one is the step's.
	v, err = Layout(t.Context(), layout, owners, &StoreLinks{Store: st, RunID: "run-1"}, opts)
	want := `step "fetch.copy": run run-1 has two different links named ` + name + ` (a matrix fan-out, or a link copied in): which one is the step's cannot be told`
	if v == nil || v.Passed || len(v.Failures) != 1 || v.Failures[0].Error() != want ||
		!errors.Is(err, ErrDisagreement) || !errors.Is(err, reject.ErrMismatch) {
		t.Fatalf("two links under one name: %v, want the refusal %s", err, want)
	}
}

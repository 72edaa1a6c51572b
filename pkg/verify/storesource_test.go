package verify

import (
	"errors"
	"strings"
	"testing"

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
	_, err = Layout(t.Context(), layout, owners, &StoreLinks{Store: st, RunID: "run-1"}, opts)
	if err == nil || !strings.Contains(err.Error(), "two different links named "+name) || errors.Is(err, ErrVerification) {
		t.Fatalf("two links under one name: %v", err)
	}
}

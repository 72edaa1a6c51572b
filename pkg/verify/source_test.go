package verify

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

type failingSource struct {
	Memory
	err error
}

func (f failingSource) ReadLink(context.Context, string) ([]byte, error) { return nil, f.err }

// A link the source lists but cannot read (a store that is down, I/O) is no
// verdict: Layout returns an "unable to check" error instead of refusing the
// link as malformed; a link the store refuses as tampered stays a failure.
func TestUnreadableLinkIsUnableToCheck(t *testing.T) {
	layout, links := newChain(t).build()
	owners := []signing.Verifier{verifier(t, "owner")}
	opts := Options{WithoutArtifactUnsafe: true}
	if _, err := ours(t, layout, links, opts); err != nil {
		t.Fatalf("the chain must pass as built: %v", err)
	}
	down := failingSource{Memory: links, err: fmt.Errorf("reading entry: %w", store.ErrUnavailable)}
	v, err := Layout(context.Background(), layout, owners, down, opts)
	if v != nil || !errors.Is(err, ErrLinkUnreadable) || !errors.Is(err, reject.ErrUnableToCheck) || errors.Is(err, reject.ErrRefused) {
		t.Fatalf("verdict %v, err %v: want no verdict and an unable-to-check error", v, err)
	}
	tampered := failingSource{Memory: links, err: fmt.Errorf("reading entry: %w", store.ErrCorrupt)}
	v, err = Layout(context.Background(), layout, owners, tampered, opts)
	if v == nil || v.Passed || !errors.Is(err, ErrMalformed) || !errors.Is(err, reject.ErrRefused) {
		t.Fatalf("verdict %v, err %v: want a refusal", v, err)
	}
}

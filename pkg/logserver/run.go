package logserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
	"github.com/stepseal/stepseal/pkg/verify"
)

// Run is one run's evidence in a served log, what `stepseal verify --from`
// verifies: its links (read through verified searches) and the log itself
// as the evidence for links of rotated-out keys.
type Run struct {
	RunID    string
	Links    verify.LinkSource
	Evidence *tlogstore.Evidence
	// Store is the verifying client over the log: a new
	// verify.StoreLinks{Store, RunID} reads the run's links again (Links
	// keeps what it read first), which a gate waiting for links needs.
	Store store.Store
}

// OpenRun reads the run runID from the log served at base, whose public
// note key is vkey; with subject instead of runID, the one run whose logged
// entries name subject. Several runs naming subject is an error listing
// them (choose one with runID); none is reject.ErrMissing. A nil hc is a
// client with a one-minute timeout per request. opts configure the client
// (WithWitnesses: every checkpoint must be cosigned).
func OpenRun(ctx context.Context, base, vkey, runID, subject string, hc *http.Client, opts ...ClientOption) (*Run, error) {
	v, err := tlog.ParseVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = HTTPClient(time.Minute)
	}
	c, err := NewClient(base, v, hc, opts...)
	if err != nil {
		return nil, err
	}
	r := &Remote{Client: c}
	switch {
	case runID != "" && subject != "":
		return nil, fmt.Errorf("a run ID or a subject, not both")
	case runID == "" && subject == "":
		return nil, fmt.Errorf("which run: a run ID or a subject digest")
	case subject != "":
		if !store.ValidDigest(subject) {
			return nil, fmt.Errorf("%w: subject %q is not sha256:<64 hex>", ErrDocument, subject)
		}
		entries, err := r.List(ctx, store.Filter{Subject: subject})
		if err != nil {
			return nil, fmt.Errorf("entries naming %s in %s: %w", subject, base, err)
		}
		var runs []string
		for _, e := range entries {
			if e.RunID != "" && !slices.Contains(runs, e.RunID) {
				runs = append(runs, e.RunID)
			}
		}
		switch len(runs) {
		case 0:
			return nil, fmt.Errorf("%w: no run in the log at %s names subject %s", reject.ErrMissing, base, subject)
		case 1:
			runID = runs[0]
		default:
			slices.Sort(runs)
			return nil, fmt.Errorf("%d runs in the log at %s name subject %s (%s): choose one with a run ID", len(runs), base, subject, strings.Join(runs, ", "))
		}
	}
	ev, err := tlogstore.NewEvidenceFrom(base, c.Log(), vkey)
	if err != nil {
		return nil, err
	}
	return &Run{RunID: runID, Links: &verify.StoreLinks{Store: r, RunID: runID}, Evidence: ev, Store: r}, nil
}

package export

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// FromServedLog is the documents of run runID in the log served at base
// (`stepseal log serve`), whose public note key is vkey: read through
// verified searches (checkpoint signature and consistency, every result's
// inclusion, that each is of the run), so what is exported is what the
// log holds. A nil hc is a client with a one-minute timeout per request.
func FromServedLog(ctx context.Context, base, vkey, runID string, hc *http.Client) ([]Doc, error) {
	if runID == "" {
		return nil, fmt.Errorf("which run: a run ID is required")
	}
	v, err := tlog.ParseVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = logserver.HTTPClient(time.Minute)
	}
	c, err := logserver.NewClient(base, v, hc)
	if err != nil {
		return nil, err
	}
	entries, err := (&logserver.Remote{Client: c}).List(ctx, store.Filter{RunID: runID})
	if err != nil {
		return nil, fmt.Errorf("run %s in the log at %s: %w", runID, base, err)
	}
	return FromEntries(entries), nil
}

package logserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// ErrWitness: the witnesses did not cosign the checkpoint that would cover
// an append (one refused it: a fork or rollback of what it saw, an unknown
// log or key), so it is not published. The entry may be in the log's
// tiles, but no checkpoint covers it; the previous checkpoint stays the
// published one. No verdict on the document (reject.ErrUnavailable).
var ErrWitness = reject.Sentinel(reject.ErrUnavailable, "witnesses did not cosign the log's checkpoint")

// WitnessStatus is what the server knows of its witnesses: what the policy
// requires, the published checkpoint, and the last refusal.
type WitnessStatus struct {
	Policy    string   `json:"policy"`
	Witnesses []string `json:"witnesses"`
	// Published is the size of the checkpoint the server publishes (cosigned).
	Published uint64 `json:"published"`
	// Refusal is the last witness answer that refused a checkpoint, and
	// RefusedSize that checkpoint's size; empty after a checkpoint was
	// cosigned again.
	Refusal     string    `json:"refusal,omitempty"`
	RefusedSize uint64    `json:"refusedSize,omitempty"`
	RefusedAt   time.Time `json:"refusedAt,omitzero"`
}

// witnessWatch records the witnesses' answers to Tessera's add-checkpoint
// requests (it is the transport of Tessera's witness HTTP client). Once
// the witnesses that refused a checkpoint leave too few to satisfy the
// policy, the appends waiting for it are cancelled, so writers hear why at
// once instead of timing out; one refusal among witnesses that can still
// satisfy a k-of-n policy cancels nothing.
type witnessWatch struct {
	base  http.RoundTripper
	group tessera.WitnessGroup

	mu      sync.Mutex
	refused map[string]error // by witness URL, for checkpoint size
	size    uint64
	refusal error  // the refusals that made the policy unsatisfiable
	refSize uint64 // of the checkpoint they refused
	at      time.Time
	changed chan struct{} // closed on each such refusal
	// failed is the last answer of a witness that failed (5xx), which is
	// no refusal (Tessera retries), kept to say why nothing was cosigned.
	failed error
}

func newWitnessWatch(g tessera.WitnessGroup) *witnessWatch {
	return &witnessWatch{base: http.DefaultTransport, group: g, refused: map[string]error{}, changed: make(chan struct{})}
}

// possible reports whether c can still be satisfied when the witnesses
// whose add-checkpoint URL is in refused do not cosign.
func possible(c any, refused map[string]error) bool {
	switch c := c.(type) {
	case tessera.Witness:
		return refused[c.URL] == nil
	case tessera.WitnessGroup:
		n := 0
		for _, m := range c.Components {
			if possible(m, refused) {
				n++
			}
		}
		return n >= c.N
	}
	return false
}

// RoundTrip implements http.RoundTripper.
func (w *witnessWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := w.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rb, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	if rerr != nil {
		return resp, nil
	}
	size, u := requestedSize(body), req.URL.String()
	switch {
	case resp.StatusCode == http.StatusOK:
		w.mu.Lock()
		if size >= w.size {
			delete(w.refused, u)
			w.refusal = nil
		}
		w.mu.Unlock()
	case resp.StatusCode == http.StatusConflict && resp.Header.Get("Content-Type") == "text/x.tlog.size":
		// The witness's latest size: Tessera retries from it unless it is
		// beyond the log's tree, which only a fork or rollback explains.
		ws, perr := strconv.ParseUint(strings.TrimSpace(string(rb)), 10, 64)
		if perr == nil && ws > size {
			w.refuse(u, size, fmt.Errorf("witness at %s has cosigned a tree of %d entries, the log's checkpoint has %d (HTTP 409): the log was rolled back or forked", req.URL.Host, ws, size))
		}
	case resp.StatusCode >= 500:
		// The witness's own failure: Tessera retries at the next interval.
		w.mu.Lock()
		w.failed = fmt.Errorf("witness at %s failed on the checkpoint of %d entries: HTTP %d %s", req.URL.Host, size, resp.StatusCode, strings.TrimSpace(string(rb)))
		w.mu.Unlock()
	default:
		w.refuse(u, size, fmt.Errorf("witness at %s refused the checkpoint of %d entries: HTTP %d %s", req.URL.Host, size, resp.StatusCode, meaning(resp.StatusCode)))
	}
	return resp, nil
}

// meaning is what a C2SP tlog-witness status says.
func meaning(status int) string {
	switch status {
	case http.StatusUnprocessableEntity:
		return "(the consistency proof from its tree does not verify: the log does not extend what it cosigned)"
	case http.StatusConflict:
		return "(same size, another root: a fork)"
	case http.StatusForbidden:
		return "(the checkpoint is not signed by the log key it knows)"
	case http.StatusNotFound:
		return "(it does not know the log's origin)"
	case http.StatusBadRequest:
		return "(bad request)"
	}
	return ""
}

// refuse records that the witness at u refused the checkpoint of size,
// and signals the appends once the policy cannot be satisfied for it.
func (w *witnessWatch) refuse(u string, size uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if size != w.size {
		w.refused, w.size = map[string]error{}, size
	}
	w.refused[u] = err
	if possible(w.group, w.refused) {
		return
	}
	errs := make([]string, 0, len(w.refused))
	for _, e := range w.refused {
		errs = append(errs, e.Error())
	}
	slices.Sort(errs)
	w.refusal = fmt.Errorf("%w: %s", ErrWitness, strings.Join(errs, "; "))
	w.refSize, w.at = size, time.Now()
	close(w.changed)
	w.changed = make(chan struct{})
}

// requestedSize is the tree size of the checkpoint in a tlog-witness
// add-checkpoint body ("old N", proof lines, a blank line, the checkpoint),
// which the server itself built.
func requestedSize(body []byte) uint64 {
	_, cp, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return 0
	}
	lines := strings.SplitN(string(cp), "\n", 3)
	if len(lines) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(lines[1], 10, 64)
	return n
}

// appendContext is the context an append waits for its checkpoint under:
// a minute, cut short by a witness refusal (context.Cause is the refusal).
func (s *Server) appendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	if s.watch == nil {
		return actx, cancel
	}
	cctx, ccancel := context.WithCancelCause(actx)
	s.watch.mu.Lock()
	ch := s.watch.changed
	s.watch.mu.Unlock()
	go func() {
		select {
		case <-cctx.Done():
		case <-ch:
			s.watch.mu.Lock()
			err := s.watch.refusal
			s.watch.mu.Unlock()
			ccancel(err)
		}
	}()
	return cctx, func() { ccancel(nil); cancel() }
}

// witnessCause is the witness refusal that cut an append short, or err.
func witnessCause(actx context.Context, err error) error {
	if c := context.Cause(actx); c != nil && c != actx.Err() {
		return fmt.Errorf("%w (the log keeps publishing its last cosigned checkpoint)", c)
	}
	return err
}

// WitnessStatus reports the witness policy and the last refusal; ok is
// false when the server has no witnesses.
func (s *Server) WitnessStatus() (WitnessStatus, bool) {
	if s.opts.Witnesses == nil {
		return WitnessStatus{}, false
	}
	st := WitnessStatus{Policy: s.opts.Witnesses.String(), Published: s.Checkpoint().Size}
	for _, w := range s.opts.Witnesses.Witnesses() {
		st.Witnesses = append(st.Witnesses, w.Name+" "+w.URL)
	}
	s.watch.mu.Lock()
	if s.watch.refusal != nil {
		st.Refusal, st.RefusedSize, st.RefusedAt = s.watch.refusal.Error(), s.watch.refSize, s.watch.at
	}
	s.watch.mu.Unlock()
	return st, true
}

func (s *Server) handleWitness(w http.ResponseWriter, r *http.Request) {
	st, ok := s.WitnessStatus()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: this log has no witnesses", ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// witnessLogOptions sets the log's witness group from opts.Witnesses and
// returns the watch on the witnesses' answers (nil without witnesses).
func witnessLogOptions(opts Options, lo *tlog.Options) *witnessWatch {
	if opts.Witnesses == nil {
		return nil
	}
	g := opts.Witnesses.Group()
	watch := newWitnessWatch(g)
	lo.Witnesses = &g
	lo.WitnessTimeout = opts.WitnessTimeout
	lo.WitnessClient = &http.Client{Transport: watch, Timeout: max(opts.WitnessTimeout, 5*time.Second)}
	return watch
}

// WithWitnesses makes a Client require p of every checkpoint it accepts.
func WithWitnesses(p *witness.Policy) ClientOption {
	return func(c *Client) {
		if p != nil {
			c.log.Require(p)
			c.witnesses = p
		}
	}
}

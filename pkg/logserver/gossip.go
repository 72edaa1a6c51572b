package logserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/stepseal/stepseal/pkg/tlog"
)

// GossipAnnotation is the run annotation holding the signed checkpoint the
// controller verified when it logged the run (controllers/annotations
// names it LogCheckpoint).
const GossipAnnotation = "stepseal.dev/log-checkpoint"

// maxGossipInput bounds what ParseGossip reads (a cluster's worth of runs).
const maxGossipInput = 256 << 20

// Gossip is a checkpoint of the log another party saw, and who (a run's
// namespace/name, a file).
type Gossip struct {
	From string
	Raw  []byte
}

// ParseGossip reads Kubernetes objects as `kubectl get taskruns,pipelineruns
// -A -o json` prints them (a List, or one object) and returns the
// checkpoints in their GossipAnnotation, named namespace/name (kind first
// when the object has one), in the order listed. Objects without it are
// skipped.
func ParseGossip(data []byte) ([]Gossip, error) {
	if len(data) > maxGossipInput {
		return nil, fmt.Errorf("%w: gossip input of %d bytes, at most %d", ErrDocument, len(data), maxGossipInput)
	}
	type object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Namespace   string            `json:"namespace"`
			Name        string            `json:"name"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	var top object
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: gossip: not Kubernetes objects as JSON: %v", ErrDocument, err)
	}
	objs := []object{top}
	if top.Items != nil {
		objs = objs[:0]
		for i, raw := range top.Items {
			var o object
			if err := json.Unmarshal(raw, &o); err != nil {
				return nil, fmt.Errorf("%w: gossip: item %d: %v", ErrDocument, i, err)
			}
			objs = append(objs, o)
		}
	}
	var out []Gossip
	for _, o := range objs {
		cp, ok := o.Metadata.Annotations[GossipAnnotation]
		if !ok {
			continue
		}
		from := o.Metadata.Name
		if o.Metadata.Namespace != "" {
			from = o.Metadata.Namespace + "/" + from
		}
		if o.Kind != "" {
			from = o.Kind + " " + from
		}
		out = append(out, Gossip{From: from, Raw: []byte(cp)})
	}
	return out, nil
}

// GossipChecked is the verdict on one gossiped checkpoint.
type GossipChecked struct {
	From string `json:"from"`
	// Size is the gossiped tree's size (0 when it did not parse).
	Size uint64 `json:"size"`
	// OtherLog: a checkpoint of another log (another origin), not compared.
	OtherLog bool `json:"otherLog,omitempty"`
	// Unverifiable: signed by the log but without the cosignatures the
	// client's witness policy requires (ErrGossipUnverifiable), not
	// compared: no verdict on a split view either way.
	Unverifiable bool   `json:"unverifiable,omitempty"`
	Error        string `json:"error,omitempty"`

	err error
}

// Err is the check's error (nil when the gossip agrees).
func (g GossipChecked) Err() error { return g.err }

// CompareGossip checks checkpoints others saw against cp, the tree the log
// shows this monitor (verified by c): each of this log's origin must be
// signed by its key (tlog.ErrBadCheckpoint), and cp's tree must extend it —
// the same root at the same size (tlog.ErrFork otherwise), a consistency
// proof from the log's tiles for a smaller one (tlog.ErrConsistency) — while
// a larger tree than cp means the log shows this monitor less than it
// showed someone else (tlog.ErrRollback): a split view, or a rollback.
// Gather the gossip before reading cp, so an honest log's is never larger.
// Checkpoints of other origins are marked OtherLog and not compared. With
// a witness policy (WithWitnesses), a gossiped checkpoint must also carry
// the cosignatures it requires — counted whatever their age, since gossip
// is as old as the run that recorded it — else it is Unverifiable
// (ErrGossipUnverifiable, a check that could not be made, not a
// refusal) and not compared: a client requiring the policy never accepted
// it, so it shows no split view of what such clients saw.
func CompareGossip(ctx context.Context, c *Client, cp tlog.Checkpoint, gossip []Gossip) []GossipChecked {
	out := make([]GossipChecked, 0, len(gossip))
	for _, g := range gossip {
		r := GossipChecked{From: g.From}
		origin, _, _ := bytes.Cut(g.Raw, []byte("\n"))
		if string(origin) != c.log.Verifier().Name() {
			r.OtherLog = true
			out = append(out, r)
			continue
		}
		gc, err := tlog.ParseCheckpoint(g.Raw, c.log.Verifier())
		var werr error
		if err == nil && c.witnesses != nil {
			werr = c.witnesses.CheckTrustedCheckpoint(gc)
		}
		switch {
		case err != nil:
			r.err = fmt.Errorf("checkpoint gossiped by %s: %w", g.From, err)
		case werr != nil:
			// The witness error's text, not its type: this is no refusal.
			r.Size, r.Unverifiable = gc.Size, true
			r.err = fmt.Errorf("%w: %s gossiped %s, which does not satisfy the witness policy %s, so it is not compared: %v", ErrGossipUnverifiable, g.From, gc, c.witnesses, werr)
		case gc.Size > cp.Size:
			r.Size = gc.Size
			r.err = fmt.Errorf("%w: %s saw %s, the log shows this monitor %s: a split view or a rollback", tlog.ErrRollback, g.From, gc, cp)
		default:
			r.Size = gc.Size
			if err := c.log.VerifyConsistency(ctx, gc, cp); err != nil {
				r.err = fmt.Errorf("checkpoint gossiped by %s: %w", g.From, err)
			}
		}
		if r.err != nil {
			r.Error = r.err.Error()
		}
		out = append(out, r)
	}
	// Refusals first, then what could not be checked, then the rest.
	rank := func(g GossipChecked) int {
		switch {
		case g.Unverifiable:
			return 1
		case g.err != nil:
			return 0
		}
		return 2
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

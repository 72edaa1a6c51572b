package embedded

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// LogReport says where the run's entries are in its transparency log.
type LogReport struct {
	Dir        string     `json:"dir"`
	PublicKey  string     `json:"publicKey"`
	Checkpoint string     `json:"checkpoint"`
	Size       uint64     `json:"size"`
	Entries    []LogEntry `json:"entries"`
}

// LogEntry is one entry of the run in its log.
type LogEntry struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Index uint64 `json:"index"`
}

// openLog opens the run's store: the embedded transparency log in
// out/store, its checkpoint key generated in out/log-key/log.key (0600)
// with the public half in out/log.pub.
func openLog(ctx context.Context, out string) (*tlogstore.Store, error) {
	priv := filepath.Join(out, "log-key", "log.key")
	if _, err := os.Stat(priv); os.IsNotExist(err) {
		if _, err := tlog.WriteKeyFiles(priv, filepath.Join(out, "log.pub"), "stepseal.dev/local"); err != nil {
			return nil, err
		}
	}
	key, err := tlog.ReadKey(priv)
	if err != nil {
		return nil, err
	}
	return tlogstore.Open(ctx, filepath.Join(out, "store"), key, nil)
}

// proveLog proves, with the log's public key only, that every entry of the
// run is in the log, and reports where.
func proveLog(ctx context.Context, w io.Writer, out string, st *tlogstore.Store, runID string) (*LogReport, error) {
	v, err := tlog.ReadVerifier(filepath.Join(out, "log.pub"))
	if err != nil {
		return nil, err
	}
	es, err := st.List(ctx, store.Filter{RunID: runID})
	if err != nil {
		return nil, err
	}
	rep := &LogReport{Dir: filepath.Join(out, "store"), PublicKey: filepath.Join(out, "log.pub")}
	for _, e := range es {
		p, err := st.Prove(ctx, e.Digest)
		if err != nil {
			return nil, err
		}
		got, err := tlogstore.VerifyProof(v, p)
		if err != nil {
			return nil, fmt.Errorf("transparency log: %s %s: %w", e.Kind, e.Name, err)
		}
		if got.Digest != e.Digest {
			return nil, fmt.Errorf("transparency log: %s %s: log entry %d holds %s, not %s", e.Kind, e.Name, p.Index, got.Digest, e.Digest)
		}
		rep.Entries = append(rep.Entries, LogEntry{Kind: e.Kind, Name: e.Name, Index: p.Index})
		cp, err := tlog.ParseCheckpoint(p.Checkpoint, v)
		if err != nil {
			return nil, err
		}
		if cp.Size >= rep.Size {
			rep.Size, rep.Checkpoint = cp.Size, cp.String()
		}
	}
	sort.Slice(rep.Entries, func(i, j int) bool { return rep.Entries[i].Index < rep.Entries[j].Index })
	fmt.Fprintf(w, "transparency log %s: %d entries of this run, each proven included in checkpoint %s with %s\n",
		rep.Dir, len(rep.Entries), rep.Checkpoint, rep.PublicKey)
	return rep, nil
}

package tlogstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Errors of Evidence.Logged besides the log's own (tlog.ErrBadCheckpoint,
// tlog.ErrConsistency, tlog.ErrInclusion for a log that does not match
// what it signed or what the layout anchors; tlog.ErrUnavailable for one
// that cannot be read).
var (
	// ErrLogKey: the log given as evidence is not the one the layout
	// names (another key or origin).
	ErrLogKey = reject.Sentinel(reject.ErrMismatch, "not the log the layout names")
	// ErrNotLogged: the log does not hold the document, or holds it only
	// at or after the anchored tree size.
	ErrNotLogged = reject.Sentinel(reject.ErrMissing, "not in the log before the rotation")
)

// Anchor reads the current checkpoint of the log in dir (a store
// directory or a bare log), verified with vkey, the log's public note key,
// and returns it as the anchor a key rotation records: the log's key, its
// tree size and the signed checkpoint.
func Anchor(ctx context.Context, dir, vkey string) (attest.LogAnchor, error) {
	vkey = strings.TrimSpace(vkey)
	v, err := tlog.ParseVerifier(vkey)
	if err != nil {
		return attest.LogAnchor{}, err
	}
	logDir, _ := LogDir(dir)
	cp, err := tlog.NewClient(logDir, v).Checkpoint(ctx)
	if err != nil {
		return attest.LogAnchor{}, fmt.Errorf("log %s: %w", dir, err)
	}
	return attest.LogAnchor{Key: vkey, Size: cp.Size, Checkpoint: string(cp.Raw)}, nil
}

// Evidence answers, from a store directory (or bare log) and the log's
// public key alone, whether the log held a link before a key rotation. It
// looks where the store's index says first (checking the entry's inclusion
// in the anchored tree); failing that it reads the whole log once. It is
// safe for concurrent use.
type Evidence struct {
	dir  string
	vkey string
	v    note.Verifier

	mu      sync.Mutex
	client  *tlog.Client
	cur     tlog.Checkpoint
	links   map[string]uint64 // link document digest -> lowest index
	scanErr error
	anchors map[string]anchored
	hints   map[string][]uint64 // from the store's index: a cache, never trusted
}

type anchored struct {
	cp  tlog.Checkpoint
	err error
}

// NewEvidence returns the evidence of the log in dir whose public note key
// is vkey.
func NewEvidence(dir, vkey string) (*Evidence, error) {
	vkey = strings.TrimSpace(vkey)
	v, err := tlog.ParseVerifier(vkey)
	if err != nil {
		return nil, err
	}
	logDir, _ := LogDir(dir)
	return &Evidence{dir: dir, vkey: vkey, v: v, client: tlog.NewClient(logDir, v), anchors: map[string]anchored{}}, nil
}

// NewEvidenceFrom returns the evidence of a log read through client (a
// served log's tiles: logserver.Client.Log), whose public note key is vkey;
// where names it in messages (its URL).
func NewEvidenceFrom(where string, client *tlog.Client, vkey string) (*Evidence, error) {
	vkey = strings.TrimSpace(vkey)
	v, err := tlog.ParseVerifier(vkey)
	if err != nil {
		return nil, err
	}
	// No index file to take hints from: Logged scans the log.
	return &Evidence{dir: where, vkey: vkey, v: v, client: client, anchors: map[string]anchored{}, hints: map[string][]uint64{}}, nil
}

// Describe names the log in messages: its origin and directory (or URL).
func (e *Evidence) Describe() string { return fmt.Sprintf("log %q in %s", e.v.Name(), e.dir) }

// Logged checks that the log a holds a link record of digest ("sha256:…")
// at an index below a.Size and returns that index. It accepts only:
//   - a log whose key is a.Key (else ErrLogKey);
//   - a.Checkpoint signed by that key, of tree size a.Size
//     (tlog.ErrBadCheckpoint);
//   - a current checkpoint of the log, signed by that key, whose tree
//     provably extends the anchored one (tlog.ErrConsistency, ErrFork);
//   - the record's inclusion, at that index, in the anchored tree itself
//     (tlog.ErrInclusion): the owners signed that tree's root hash into the
//     layout, so no one, not even the log's key holder, can add an entry
//     below a.Size afterwards.
//
// A record found only at a.Size or later, or not at all, is ErrNotLogged.
func (e *Evidence) Logged(ctx context.Context, a attest.LogAnchor, digest string) (uint64, error) {
	if strings.TrimSpace(a.Key) != e.vkey {
		return 0, fmt.Errorf("%w: %s has key %s, the layout names log key %s", ErrLogKey, e.Describe(), e.vkey, a.Key)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cpA, err := e.anchor(ctx, a)
	if err != nil {
		return 0, err
	}
	if i, ok := e.hinted(ctx, cpA, digest); ok {
		return i, nil
	}
	if err := e.scan(ctx); err != nil {
		return 0, err
	}
	i, ok := e.links[digest]
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: %s (tree size %d) holds no link record of %s", ErrNotLogged, e.Describe(), e.cur.Size, digest)
	case i >= a.Size:
		return i, fmt.Errorf("%w: %s holds link %s at index %d, at or after the rotation (log size %d)", ErrNotLogged, e.Describe(), digest, i, a.Size)
	}
	raw, err := e.client.Entry(ctx, i, cpA)
	if err != nil {
		return i, fmt.Errorf("entry %d in the tree the layout anchors (%s): %w", i, cpA, err)
	}
	r, err := parseRecord(raw)
	if err != nil || r.Kind != store.KindLink || r.Digest != digest {
		return i, fmt.Errorf("%w: entry %d of the anchored tree %s is not the record of link %s", tlog.ErrInclusion, i, cpA, digest)
	}
	return i, nil
}

// anchor verifies a's checkpoint and that the log's current tree extends
// it, once per anchor.
func (e *Evidence) anchor(ctx context.Context, a attest.LogAnchor) (tlog.Checkpoint, error) {
	got, ok := e.anchors[a.Checkpoint]
	if !ok {
		got = e.verifyAnchor(ctx, a)
		e.anchors[a.Checkpoint] = got
	}
	if got.err == nil && got.cp.Size != a.Size {
		return tlog.Checkpoint{}, fmt.Errorf("%w: the layout's checkpoint is of tree size %d, it records size %d", tlog.ErrBadCheckpoint, got.cp.Size, a.Size)
	}
	return got.cp, got.err
}

// verifyAnchor checks a's checkpoint with the log's key and that the log's
// current tree extends it.
func (e *Evidence) verifyAnchor(ctx context.Context, a attest.LogAnchor) anchored {
	cp, err := func() (tlog.Checkpoint, error) {
		cp, err := tlog.ParseCheckpoint([]byte(a.Checkpoint), e.v)
		if err != nil {
			return tlog.Checkpoint{}, fmt.Errorf("the layout's checkpoint: %w", err)
		}
		if _, err := e.client.Trust(ctx, cp.Raw); err != nil {
			return tlog.Checkpoint{}, err
		}
		cur, err := e.client.Checkpoint(ctx)
		if err != nil {
			return tlog.Checkpoint{}, fmt.Errorf("%s: %w", e.Describe(), err)
		}
		if cur.Size >= e.cur.Size {
			e.cur = cur
		}
		return cp, nil
	}()
	return anchored{cp, err}
}

// scan reads every record of the current tree once, verifying each one's
// inclusion, and indexes the link records by digest.
func (e *Evidence) scan(ctx context.Context) error {
	if e.links != nil || e.scanErr != nil {
		return e.scanErr
	}
	links := map[string]uint64{}
	err := e.client.Audit(ctx, e.cur, 0, func(i uint64, raw []byte) error {
		r, err := parseRecord(raw)
		if err != nil {
			return fmt.Errorf("%w: log entry %d: %w", store.ErrCorrupt, i, err)
		}
		if _, seen := links[r.Digest]; !seen && r.Kind == store.KindLink {
			links[r.Digest] = i
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		e.scanErr = fmt.Errorf("%s: %w", e.Describe(), err)
		return e.scanErr
	}
	e.links = links
	return nil
}

// hinted looks digest up in the store's query index (DIR/index), which is
// a cache anyone could edit: it only says where to look. It accepts the
// first index below the anchored size whose entry, read with its inclusion
// proven in the anchored tree, is the link record of digest; otherwise
// (no index, a wrong or missing line, a failed proof) it answers nothing
// and Logged scans the log itself.
func (e *Evidence) hinted(ctx context.Context, cpA tlog.Checkpoint, digest string) (uint64, bool) {
	if e.hints == nil {
		e.hints = map[string][]uint64{}
		if _, isStore := LogDir(e.dir); isStore {
			if b, err := os.ReadFile(filepath.Join(e.dir, "index")); err == nil {
				lines, _ := splitIndex(b)
				for _, l := range lines {
					if l.Kind == store.KindLink {
						e.hints[l.Digest] = append(e.hints[l.Digest], l.I)
					}
				}
			}
		}
	}
	idx := slices.Clone(e.hints[digest])
	slices.Sort(idx)
	for _, i := range idx {
		if i >= cpA.Size {
			break
		}
		raw, err := e.client.Entry(ctx, i, cpA)
		if err != nil {
			continue
		}
		if r, err := parseRecord(raw); err == nil && r.Kind == store.KindLink && r.Digest == digest {
			return i, true
		}
	}
	return 0, false
}

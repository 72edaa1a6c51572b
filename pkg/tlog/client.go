package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// Fetcher reads a tlog-tiles log's resources. Reads of a partial tile or
// bundle fall back to the full one; a missing resource is os.ErrNotExist.
// Tessera's client.FileFetcher and client.HTTPFetcher are Fetchers.
type Fetcher interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// Client verifies a log it can only read, with the log's public key.
//
// It remembers the largest checkpoint it has verified (seed it with Trust,
// e.g. from a checkpoint saved by an earlier run) and accepts a new one only
// if it is signed by the key (else ErrBadCheckpoint), is not smaller
// (ErrRollback), and its tree provably extends the remembered one
// (ErrConsistency, ErrFork). A checkpoint, tile or entry bundle it cannot
// read (an HTTP error, the network, I/O) is ErrUnavailable, no verdict; one
// the log says is not there is the refusal of the check that needed it. A
// Client is safe for concurrent use.
type Client struct {
	f      Fetcher
	v      note.Verifier
	policy CheckpointPolicy

	mu     sync.Mutex
	latest *Checkpoint
}

// NewClient returns a Client over the log stored in dir.
func NewClient(dir string, v note.Verifier) *Client {
	return NewClientFrom(tclient.FileFetcher{Root: dir}, v)
}

// NewClientFrom returns a Client over any Fetcher (e.g. tessera's
// client.HTTPFetcher for a log served over HTTP).
func NewClientFrom(f Fetcher, v note.Verifier) *Client {
	return &Client{f: f, v: v}
}

// CheckpointPolicy is a further check of every checkpoint a Client
// accepts, made after the log key's signature verified: e.g. that enough
// witnesses cosigned it (pkg/logserver/witness).
type CheckpointPolicy interface {
	CheckCheckpoint(cp Checkpoint) error
}

// TrustedPolicy is a CheckpointPolicy with a separate check for a
// checkpoint kept from earlier (Trust): one that depends on time, such as
// the age of witness cosignatures, applies to what a log shows now, not to
// a floor saved last week. The client checks CheckCheckpoint again on
// every use of the newest checkpoint, so an answer carrying the same
// checkpoint as before cannot outlive the policy either.
type TrustedPolicy interface {
	CheckpointPolicy
	CheckTrustedCheckpoint(cp Checkpoint) error
}

// Require makes p a condition of every checkpoint the client accepts from
// now on (VerifyCheckpoint, Checkpoint, Trust). Call it before the first
// read.
func (c *Client) Require(p CheckpointPolicy) {
	c.mu.Lock()
	c.policy = p
	c.mu.Unlock()
}

// Verifier is the log key the client checks signatures with.
func (c *Client) Verifier() note.Verifier { return c.v }

// Latest is the largest checkpoint verified so far.
func (c *Client) Latest() (Checkpoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.latest == nil {
		return Checkpoint{}, false
	}
	return *c.latest, true
}

// Trust makes raw (a checkpoint saved earlier, e.g. the one the controller
// recorded) the floor for later checkpoints: it is verified like any other,
// so a smaller one already seen makes it ErrRollback; a TrustedPolicy's
// CheckTrustedCheckpoint applies instead of CheckCheckpoint.
func (c *Client) Trust(ctx context.Context, raw []byte) (Checkpoint, error) {
	return c.verifyCheckpoint(ctx, raw, true)
}

// Checkpoint reads the log's current checkpoint and verifies it with
// VerifyCheckpoint.
func (c *Client) Checkpoint(ctx context.Context) (Checkpoint, error) {
	raw, err := c.f.ReadCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, refuse(ErrBadCheckpoint, fetched(err), "read checkpoint of %q", c.v.Name())
	}
	return c.VerifyCheckpoint(ctx, raw)
}

// VerifyCheckpoint checks raw's signature and that it is consistent with the
// largest checkpoint seen before, then remembers it if it is larger.
func (c *Client) VerifyCheckpoint(ctx context.Context, raw []byte) (Checkpoint, error) {
	return c.verifyCheckpoint(ctx, raw, false)
}

func (c *Client) verifyCheckpoint(ctx context.Context, raw []byte, trusted bool) (Checkpoint, error) {
	// The same bytes as the newest checkpoint verified: its signature and
	// consistency were checked then, with this client's key (every answer
	// of a burst of appends carries the same checkpoint). A policy is
	// asked again: its verdict may depend on time.
	c.mu.Lock()
	if c.latest != nil && bytes.Equal(c.latest.Raw, raw) {
		cp, p := *c.latest, c.policy
		c.mu.Unlock()
		if err := checkPolicy(p, cp, trusted); err != nil {
			return Checkpoint{}, err
		}
		return cp, nil
	}
	c.mu.Unlock()
	cp, err := ParseCheckpoint(raw, c.v)
	if err != nil {
		return Checkpoint{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkPolicy(c.policy, cp, trusted); err != nil {
		return Checkpoint{}, err
	}
	if c.latest != nil {
		if bytes.Equal(c.latest.Raw, cp.Raw) {
			return cp, nil
		}
		if err := c.verifyConsistency(ctx, *c.latest, cp); err != nil {
			return Checkpoint{}, err
		}
		if cp.Size == c.latest.Size {
			return cp, nil // same tree, another signature (e.g. republished)
		}
	}
	c.latest = &cp
	return cp, nil
}

// checkPolicy applies p (if any) to cp; trusted selects a TrustedPolicy's
// check for a kept checkpoint.
func checkPolicy(p CheckpointPolicy, cp Checkpoint, trusted bool) error {
	if p == nil {
		return nil
	}
	if tp, ok := p.(TrustedPolicy); ok && trusted {
		return tp.CheckTrustedCheckpoint(cp)
	}
	return p.CheckCheckpoint(cp)
}

// VerifyConsistency checks that newer's tree extends older's, with a proof
// built from the log's tiles.
func (c *Client) VerifyConsistency(ctx context.Context, older, newer Checkpoint) error {
	return c.verifyConsistency(ctx, older, newer)
}

func (c *Client) verifyConsistency(ctx context.Context, older, newer Checkpoint) error {
	var hashes [][]byte
	if older.verified && newer.verified && older.Size > 0 && newer.Size > older.Size {
		var err error
		if hashes, err = c.ConsistencyProof(ctx, older.Size, newer.Size); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return refuse(ErrConsistency, err, "tree %s does not extend %s", newer, older)
		}
	}
	return VerifyConsistencyProof(older, newer, hashes)
}

// ConsistencyProof builds the proof that the tree of size newer extends the
// one of size older from the log's tiles. It is not verified.
func (c *Client) ConsistencyProof(ctx context.Context, older, newer uint64) ([][]byte, error) {
	if older > newer {
		return nil, fmt.Errorf("%w: consistency from %d to %d", ErrRollback, older, newer)
	}
	t := &tiles{read: c.f.ReadTile}
	pb, err := tclient.NewProofBuilder(ctx, newer, t.ReadTile)
	if err != nil {
		return nil, t.cause(err)
	}
	hashes, err := pb.ConsistencyProof(ctx, older, newer)
	if err != nil {
		return nil, t.cause(err)
	}
	return hashes, nil
}

// InclusionProof builds the proof that entry index is in the tree of size
// treeSize from the log's tiles. It is not verified.
func (c *Client) InclusionProof(ctx context.Context, index, treeSize uint64) ([][]byte, error) {
	if index >= treeSize {
		return nil, fmt.Errorf("%w: entry %d, tree of %d entries", ErrNotIntegrated, index, treeSize)
	}
	t := &tiles{read: c.f.ReadTile}
	pb, err := tclient.NewProofBuilder(ctx, treeSize, t.ReadTile)
	if err != nil {
		return nil, t.cause(err)
	}
	hashes, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, t.cause(err)
	}
	return hashes, nil
}

// tiles reads tiles for tessera's proof builder and keeps the first read
// that failed: the builder's errors keep only its text, and whether a tile
// is absent (a refusal) or could not be read (no verdict) is in the cause.
type tiles struct {
	read func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)

	mu  sync.Mutex
	err error
}

// ReadTile is a tclient.TileFetcherFunc.
func (t *tiles) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := t.read(ctx, level, index, p)
	if err != nil {
		t.mu.Lock()
		if t.err == nil {
			t.err = err
		}
		t.mu.Unlock()
	}
	return b, err
}

// cause is err of the proof builder, or the failed tile read behind it
// (see fetched).
func (t *tiles) cause(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return fetched(fmt.Errorf("tile: %w", t.err))
	}
	return err
}

// reset forgets a failed read, before the builder is used again.
func (t *tiles) reset() {
	t.mu.Lock()
	t.err = nil
	t.mu.Unlock()
}

// fetched is the error of a failed read of the log's resources: as it is
// when the resource is not there (the caller's refusal, for a resource the
// signed tree commits to), ErrUnavailable when the read failed.
func fetched(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// refuse is err, a failure to read or prove what a signed tree commits to,
// as refusal, unless the log could not be read at all (ErrUnavailable): that
// is no verdict.
func refuse(refusal, err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return fmt.Errorf("%w: %s: %w", refusal, msg, err)
}

// VerifyInclusion checks that data is the entry at index in the tree cp
// commits to, with a proof built from the log's tiles.
func (c *Client) VerifyInclusion(ctx context.Context, data []byte, index uint64, cp Checkpoint) error {
	s, err := c.Snapshot(cp)
	if err != nil {
		return err
	}
	return s.VerifyInclusion(ctx, data, index)
}

// Entry reads entry index of the tree cp commits to and verifies its
// inclusion before returning it.
func (c *Client) Entry(ctx context.Context, index uint64, cp Checkpoint) ([]byte, error) {
	s, err := c.Snapshot(cp)
	if err != nil {
		return nil, err
	}
	return s.Entry(ctx, index)
}

// Snapshot reads one tree, cp's, caching the tiles and the entry bundle it
// read last, for many reads in a row (a query, an audit). It is not safe for
// concurrent use.
func (c *Client) Snapshot(cp Checkpoint) (*Snapshot, error) {
	if err := cp.check("snapshot"); err != nil {
		return nil, err
	}
	if cp.Origin != c.v.Name() {
		return nil, fmt.Errorf("%w: checkpoint of log %q, client of %q", ErrBadCheckpoint, cp.Origin, c.v.Name())
	}
	return &Snapshot{c: c, cp: cp}, nil
}

// Snapshot reads and verifies entries of one tree; see Client.Snapshot.
type Snapshot struct {
	c     *Client
	cp    Checkpoint
	pb    *tclient.ProofBuilder
	tiles *tiles // pb's

	bundleIndex uint64
	bundle      [][]byte
}

// Checkpoint is the tree this snapshot reads.
func (s *Snapshot) Checkpoint() Checkpoint { return s.cp }

// VerifyInclusion checks that data is entry index of the snapshot's tree.
func (s *Snapshot) VerifyInclusion(ctx context.Context, data []byte, index uint64) error {
	if index >= s.cp.Size {
		return fmt.Errorf("%w: %w: entry %d, tree %s has %d entries", ErrInclusion, ErrNotIntegrated, index, s.cp, s.cp.Size)
	}
	if s.pb == nil {
		s.tiles = &tiles{read: s.c.f.ReadTile}
		pb, err := tclient.NewProofBuilder(ctx, s.cp.Size, s.tiles.ReadTile)
		if err != nil {
			return refuse(ErrInclusion, s.tiles.cause(err), "entry %d in tree %s", index, s.cp)
		}
		s.pb = pb
	}
	s.tiles.reset()
	hashes, err := s.pb.InclusionProof(ctx, index)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return refuse(ErrInclusion, s.tiles.cause(err), "entry %d in tree %s: no proof from the log's tiles", index, s.cp)
	}
	return VerifyInclusionProof(data, index, s.cp, hashes)
}

// Entry reads entry index and verifies its inclusion.
func (s *Snapshot) Entry(ctx context.Context, index uint64) ([]byte, error) {
	data, err := s.rawEntry(ctx, index)
	if err != nil {
		return nil, err
	}
	if err := s.VerifyInclusion(ctx, data, index); err != nil {
		return nil, err
	}
	return data, nil
}

func (s *Snapshot) rawEntry(ctx context.Context, index uint64) ([]byte, error) {
	if index >= s.cp.Size {
		return nil, fmt.Errorf("%w: entry %d, tree %s has %d entries", ErrNotIntegrated, index, s.cp, s.cp.Size)
	}
	bi := index / layout.EntryBundleWidth
	if s.bundle == nil || s.bundleIndex != bi {
		raw, err := s.c.f.ReadEntryBundle(ctx, bi, layout.PartialTileSize(0, bi, s.cp.Size))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, refuse(ErrInclusion, fetched(err), "entry %d in tree %s: entry bundle %d unreadable", index, s.cp, bi)
		}
		entries, err := ParseEntryBundle(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d in tree %s: entry bundle %d: %w", ErrInclusion, index, s.cp, bi, err)
		}
		s.bundle, s.bundleIndex = entries, bi
	}
	off := index % layout.EntryBundleWidth
	if off >= uint64(len(s.bundle)) {
		return nil, fmt.Errorf("%w: entry %d in tree %s: entry bundle %d has %d entries", ErrInclusion, index, s.cp, bi, len(s.bundle))
	}
	return s.bundle[off], nil
}

// ParseEntryBundle splits a tlog-tiles entry bundle (big-endian uint16
// length, then the entry, repeated) into its entries; at most 256.
func ParseEntryBundle(raw []byte) ([][]byte, error) {
	var b api.EntryBundle
	if err := b.UnmarshalText(raw); err != nil {
		return nil, err
	}
	if len(b.Entries) > layout.EntryBundleWidth {
		return nil, fmt.Errorf("%d entries in one bundle, at most %d", len(b.Entries), layout.EntryBundleWidth)
	}
	return b.Entries, nil
}

// Audit reads every entry of cp's tree from index from on, verifies each
// one's inclusion and calls fn with it, in index order. It stops at the
// first failure, or when fn returns an error.
func (c *Client) Audit(ctx context.Context, cp Checkpoint, from uint64, fn func(index uint64, data []byte) error) error {
	s, err := c.Snapshot(cp)
	if err != nil {
		return err
	}
	for i := from; i < cp.Size; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := s.Entry(ctx, i)
		if err != nil {
			return err
		}
		if err := fn(i, data); err != nil {
			return err
		}
	}
	return nil
}

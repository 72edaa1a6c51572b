package tlog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// MaxEntrySize is the largest entry a tlog-tiles entry bundle can hold.
const MaxEntrySize = tessera.DefaultEntrySizeLimit

// Options tune batching and checkpoint publication. The zero value is usable.
type Options struct {
	// BatchMaxSize is how many concurrent Appends are sequenced together at
	// most (default 256).
	BatchMaxSize uint
	// BatchMaxAge is how long the first entry of a batch waits for others
	// (default 5ms).
	BatchMaxAge time.Duration
	// CheckpointInterval is the least time between two published checkpoints
	// (default and minimum 100ms, Tessera's POSIX driver's floor). It bounds
	// sequential Appends to about one per interval; concurrent ones share a
	// checkpoint.
	CheckpointInterval time.Duration
	// PollInterval is how often Append looks for a new checkpoint (default
	// 5ms).
	PollInterval time.Duration
	// DedupEntries is the size of Tessera's in-memory antispam cache: an
	// Append of data already appended by this process, while it is still in
	// the cache, returns the earlier index instead of a new entry (default
	// 4096; it does not survive a restart).
	DedupEntries uint
	// Witnesses, when set with a threshold above zero, must cosign every
	// checkpoint (C2SP tlog-witness, through Tessera's witness gateway)
	// before it is published: a checkpoint they do not cosign within
	// WitnessTimeout is not published (never fail-open), the previous one
	// stays, and Appends waiting for it wait on. A new log's first, empty
	// checkpoint needs them too, so Open fails if they are unreachable.
	Witnesses *tessera.WitnessGroup
	// WitnessTimeout bounds one round of witness requests (default 5s).
	WitnessTimeout time.Duration
	// WitnessClient sends the witness requests (default
	// http.DefaultClient).
	WitnessClient *http.Client
	// OnSequenced, if set, is called by this Log's Appends each time their
	// entries are sequenced and integrated (durable in the log's files,
	// IntegratedSize counts them), before they wait for a checkpoint. It
	// must not block. It is this Log's, not shared with other Opens of the
	// directory.
	OnSequenced func()
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.BatchMaxSize == 0 {
		r.BatchMaxSize = tessera.DefaultBatchMaxSize
	}
	if r.BatchMaxAge == 0 {
		r.BatchMaxAge = 5 * time.Millisecond
	}
	if r.CheckpointInterval < 100*time.Millisecond {
		r.CheckpointInterval = 100 * time.Millisecond
	}
	if r.PollInterval == 0 {
		r.PollInterval = 5 * time.Millisecond
	}
	if r.DedupEntries == 0 {
		r.DedupEntries = 4096
	}
	return r
}

// Log appends to a transparency log stored in a directory: Tessera's POSIX
// layout (checkpoint, tile/..., tile/entries/...; private state in .state/),
// which is also what a Client reads. Several processes may append to one
// directory (Tessera serialises them with file locks). Within one process,
// every Open of a directory shares one sequencer (Tessera's locks do not
// exclude a second appender of the same process, which would hand out the
// same indexes twice and corrupt the tree). OpenStorage opens a Log on
// another Tessera driver instead (Storage), whose appenders coordinate
// themselves. A Log is safe for concurrent use.
type Log struct {
	dir         string // "" for a Log on a Storage
	name        string // dir, or the Storage's Name
	fetch       Fetcher
	key         Key
	seq         *sequencer
	client      *Client
	onSequenced func()

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// ErrClosed: an Append through a Log already closed.
var ErrClosed = errors.New("tlog: log closed")

// sequencer is the one Tessera appender of a directory in this process,
// shared by every Log open on it.
type sequencer struct {
	path     string // the directory's resolved path, its key in sequencers
	signer   string // the checkpoint signer's name and key hash
	appender *tessera.Appender
	reader   tessera.LogReader
	awaiter  *tessera.PublicationAwaiter
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	close    func() error // the Storage's Close, if any
	refs     int
	// stopped is closed once the last Log's Close has shut the appender
	// down; until then a new Open of the directory waits.
	stopped chan struct{}
}

// sequencers holds the directories open in this process.
var (
	sequencersMu sync.Mutex
	sequencers   = map[string]*sequencer{}
)

// Open opens the log in dir, creating it if it is empty, signing
// checkpoints with key. An existing checkpoint must verify with key. Open
// returns once every entry already integrated is covered by a published
// checkpoint (it may not be, after a crash).
func Open(ctx context.Context, dir string, key Key, opts *Options) (*Log, error) {
	o := opts.withDefaults()
	if key.Signer == nil || key.Verifier == nil {
		return nil, errors.New("tlog: Open needs a signer and its verifier")
	}
	if err := checkKeyPair(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	c := NewClient(dir, key.Verifier)
	if _, err := os.Stat(filepath.Join(dir, layout.CheckpointPath)); err == nil {
		// An existing log must be this key's: never sign on top of another.
		if _, err := c.Checkpoint(ctx); err != nil {
			return nil, fmt.Errorf("tlog: log in %s: %w", dir, err)
		}
	}
	seq, err := acquire(ctx, dir, key, o)
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, name: dir, fetch: tclient.FileFetcher{Root: dir}, key: key, seq: seq, client: c, onSequenced: o.OnSequenced}
	if err := l.awaitPublished(ctx, o.PollInterval); err != nil {
		_ = l.Close(ctx)
		return nil, err
	}
	return l, nil
}

// acquire returns the directory's sequencer, starting Tessera's appender on
// it if no Log of this process has it open. A second Open must sign with the
// same key; the first Open's Options hold for all.
func acquire(ctx context.Context, dir string, key Key, o Options) (*sequencer, error) {
	path, err := filepath.EvalSymlinks(dir)
	if err == nil {
		path, err = filepath.Abs(path)
	}
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	signer := fmt.Sprintf("%s+%08x", key.Signer.Name(), key.Signer.KeyHash())
	sequencersMu.Lock()
	defer sequencersMu.Unlock()
	for {
		seq := sequencers[path]
		if seq == nil {
			break
		}
		if seq.refs == 0 { // the last Close is shutting it down
			sequencersMu.Unlock()
			select {
			case <-seq.stopped:
			case <-ctx.Done():
				sequencersMu.Lock()
				return nil, ctx.Err()
			}
			sequencersMu.Lock()
			continue
		}
		if seq.signer != signer {
			return nil, fmt.Errorf("tlog: %s is open in this process with signer %s, not %s", dir, seq.signer, signer)
		}
		seq.refs++
		return seq, nil
	}
	driver, err := posix.New(ctx, posix.Config{Path: dir, HTTPClient: o.WitnessClient})
	if err != nil {
		return nil, fmt.Errorf("tlog: storage %s: %w", dir, err)
	}
	seq, err := startSequencer(driver, nil, key, o)
	if err != nil {
		return nil, fmt.Errorf("tlog: open %s: %w", dir, err)
	}
	seq.path, seq.signer = path, signer
	sequencers[path] = seq
	return seq, nil
}

// startSequencer starts Tessera's appender on driver, with a persistent
// antispam (nil: the in-memory one only).
func startSequencer(driver tessera.Driver, antispam tessera.Antispam, key Key, o Options) (*sequencer, error) {
	bg, cancel := context.WithCancel(context.Background())
	ao := tessera.NewAppendOptions().
		WithCheckpointSigner(key.Signer).
		WithCheckpointInterval(o.CheckpointInterval).
		WithCheckpointRepublishInterval(max(o.CheckpointInterval, 10*time.Minute)).
		WithBatching(o.BatchMaxSize, o.BatchMaxAge).
		WithAntispam(o.DedupEntries, antispam)
	if o.Witnesses != nil && o.Witnesses.N > 0 {
		// FailOpen stays false: an unwitnessed checkpoint is never published.
		ao = ao.WithWitnesses(*o.Witnesses, &tessera.WitnessOptions{Timeout: o.WitnessTimeout})
	}
	appender, shutdown, reader, err := tessera.NewAppender(bg, driver, ao)
	if err != nil {
		cancel()
		return nil, err
	}
	return &sequencer{
		appender: appender,
		reader:   reader,
		awaiter:  tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, o.PollInterval),
		shutdown: shutdown,
		cancel:   cancel,
		refs:     1,
		stopped:  make(chan struct{}),
	}, nil
}

// release drops one Log's hold on seq; the last one waits until everything
// appended is published and stops Tessera's background work.
func (seq *sequencer) release(ctx context.Context) error {
	sequencersMu.Lock()
	seq.refs--
	last := seq.refs == 0
	sequencersMu.Unlock()
	if !last {
		return nil
	}
	err := seq.shutdown(ctx)
	seq.cancel()
	if seq.close != nil {
		if cerr := seq.close(); err == nil {
			err = cerr
		}
	}
	sequencersMu.Lock()
	if seq.path != "" {
		delete(sequencers, seq.path)
	}
	close(seq.stopped)
	sequencersMu.Unlock()
	return err
}

// checkKeyPair makes sure the verifier checks the signer's signatures, so a
// log is never opened with a key its readers cannot verify.
func checkKeyPair(key Key) error {
	msg, err := note.Sign(&note.Note{Text: "stepseal tlog key check\n"}, key.Signer)
	if err != nil {
		return fmt.Errorf("tlog: signer of %q cannot sign: %w", key.Signer.Name(), err)
	}
	if _, err := note.Open(msg, note.VerifierList(key.Verifier)); err != nil {
		return fmt.Errorf("tlog: verifier %q (%08x) does not verify signer %q (%08x)", key.Verifier.Name(), key.Verifier.KeyHash(), key.Signer.Name(), key.Signer.KeyHash())
	}
	return nil
}

// awaitPublished waits until the published checkpoint covers the integrated
// tree, and verifies it.
func (l *Log) awaitPublished(ctx context.Context, poll time.Duration) error {
	integrated, err := l.seq.reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("tlog: %s: %w", l.name, err)
	}
	for {
		cp, err := l.client.Checkpoint(ctx)
		if err == nil && cp.Size >= integrated {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("tlog: %s: %w", l.name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// Append adds data to the log and returns its index once the entry is
// integrated and a signed checkpoint covering it is published (everything
// written with fsync: a crash after Append returns loses nothing). Data this
// process appended recently returns its earlier index (see
// Options.DedupEntries). If ctx ends first the entry may still be added.
func (l *Log) Append(ctx context.Context, data []byte) (uint64, error) {
	idx, err := l.AppendMany(ctx, [][]byte{data})
	if err != nil {
		return 0, err
	}
	return idx[0], nil
}

// AppendMany appends every entry of data, in one batch where possible, and
// returns their indexes once one checkpoint covers all of them.
func (l *Log) AppendMany(ctx context.Context, data [][]byte) ([]uint64, error) {
	out, _, err := l.appendMany(ctx, data)
	return out, err
}

// AppendCovered is Append that also returns the published checkpoint
// that covers the entry, verified like Checkpoint's.
func (l *Log) AppendCovered(ctx context.Context, data []byte) (uint64, Checkpoint, error) {
	idx, raw, err := l.appendMany(ctx, [][]byte{data})
	if err != nil {
		return 0, Checkpoint{}, err
	}
	cp, err := l.client.VerifyCheckpoint(ctx, raw)
	if errors.Is(err, ErrRollback) && !errors.Is(err, ErrFork) {
		// Another Append verified a newer checkpoint first; it covers
		// this entry too.
		if latest, ok := l.client.Latest(); ok && latest.Size > idx[0] {
			cp, err = latest, nil
		}
	}
	if err != nil {
		return 0, Checkpoint{}, fmt.Errorf("tlog: checkpoint covering entry %d of %s: %w", idx[0], l.name, err)
	}
	if cp.Size <= idx[0] {
		return 0, Checkpoint{}, fmt.Errorf("%w: checkpoint %s published for entry %d of %s does not cover it", ErrBadCheckpoint, cp, idx[0], l.name)
	}
	return idx[0], cp, nil
}

func (l *Log) appendMany(ctx context.Context, data [][]byte) ([]uint64, []byte, error) {
	for i, d := range data {
		if len(d) > MaxEntrySize {
			return nil, nil, fmt.Errorf("%w: entry %d of %d bytes, at most %d", ErrTooLarge, i, len(d), MaxEntrySize)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if l.closed.Load() {
		return nil, nil, fmt.Errorf("%w: %s", ErrClosed, l.name)
	}
	futures := make([]tessera.IndexFuture, len(data))
	for i, d := range data {
		futures[i] = l.seq.appender.Add(ctx, tessera.NewEntry(d))
	}
	out := make([]uint64, len(data))
	var last tessera.IndexFuture
	var lastIdx uint64
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			return nil, nil, fmt.Errorf("tlog: append to %s: %w", l.name, err)
		}
		out[i] = idx.Index
		if last == nil || idx.Index >= lastIdx {
			last, lastIdx = f, idx.Index
		}
	}
	if l.onSequenced != nil {
		l.onSequenced()
	}
	var cp []byte
	if last != nil {
		var err error
		if _, cp, err = l.seq.awaiter.Await(ctx, last); err != nil {
			return nil, nil, fmt.Errorf("tlog: await checkpoint covering entry %d of %s: %w", lastIdx, l.name, err)
		}
	}
	return out, cp, nil
}

// IntegratedSize is the number of entries sequenced and integrated into
// the tree: written with fsync, so they survive a crash, and covered by the
// next checkpoint published (Open publishes one for them after a crash),
// though perhaps not by the current one.
func (l *Log) IntegratedSize(ctx context.Context) (uint64, error) {
	n, err := l.seq.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("tlog: integrated size of %s: %w", l.name, err)
	}
	return n, nil
}

// Checkpoint returns the log's current checkpoint, verified.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	return l.client.Checkpoint(ctx)
}

// InclusionProof returns the proof that entry index is in the tree of size
// treeSize.
func (l *Log) InclusionProof(ctx context.Context, index, treeSize uint64) ([][]byte, error) {
	return l.client.InclusionProof(ctx, index, treeSize)
}

// ConsistencyProof returns the proof that the tree of size newer extends
// the one of size older.
func (l *Log) ConsistencyProof(ctx context.Context, older, newer uint64) ([][]byte, error) {
	return l.client.ConsistencyProof(ctx, older, newer)
}

// Entry returns entry index, verified against the current checkpoint.
func (l *Log) Entry(ctx context.Context, index uint64) ([]byte, error) {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return l.client.Entry(ctx, index, cp)
}

// Client is the log's own verifying reader (it has seen every checkpoint
// this Log returned, so a rolled-back checkpoint on disk is ErrRollback).
func (l *Log) Client() *Client { return l.client }

// Verifier is the log's public key.
func (l *Log) Verifier() note.Verifier { return l.key.Verifier }

// Origin is the log's name, the first line of its checkpoints.
func (l *Log) Origin() string { return l.key.Verifier.Name() }

// Dir is the log's directory ("" for a Log on a Storage).
func (l *Log) Dir() string { return l.dir }

// Name is the log's directory or its Storage's Name, for messages.
func (l *Log) Name() string { return l.name }

// Fetcher reads the log's published files (checkpoint, tiles, entry
// bundles) where the log keeps them.
func (l *Log) Fetcher() Fetcher { return l.fetch }

// Close waits until every entry appended is covered by a published
// checkpoint, then stops the log's background work once no other Log of
// this process has the directory open. Later Appends fail. Closing twice
// returns the first Close's result.
func (l *Log) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		if err := l.seq.release(ctx); err != nil {
			l.closeErr = fmt.Errorf("tlog: close %s: %w", l.name, err)
		}
		l.closed.Store(true)
	})
	return l.closeErr
}

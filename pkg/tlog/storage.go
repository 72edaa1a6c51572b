package tlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/transparency-dev/tessera"
)

// Storage is a log kept somewhere other than a local directory: a Tessera
// driver that several processes (replicas) may append through at once,
// each with its own Log, because the driver coordinates them itself (the
// AWS driver, on a MySQL-compatible database and an S3-compatible object
// store: see pkg/logserver/awslog).
type Storage struct {
	// Name says where the log is, for messages; it must hold no secret.
	Name string
	// Driver is the Tessera driver the Log appends through.
	Driver tessera.Driver
	// Fetcher reads what the driver published (checkpoint, tiles, entry
	// bundles); a missing resource is os.ErrNotExist, and a partial tile
	// or bundle falls back to the full one.
	Fetcher Fetcher
	// ReadFile reads one published file by its tlog-tiles path
	// ("checkpoint", "tile/0/001.p/5", "tile/entries/000"), exactly: no
	// fallback from a partial resource to the full one. A missing file is
	// os.ErrNotExist.
	ReadFile func(ctx context.Context, path string) ([]byte, error)
	// Antispam, if set, is Tessera's persistent duplicate filter shared by
	// the replicas (best effort; the Log's in-memory one applies too).
	Antispam tessera.Antispam
	// MinCheckpointInterval is the driver's floor for
	// Options.CheckpointInterval (the AWS driver's is 1s); a smaller one
	// is raised to it.
	MinCheckpointInterval time.Duration
	// Close, if set, releases what the Storage holds once the Log is
	// closed.
	Close func() error
}

// OpenStorage opens the log kept in st, creating it if it is empty,
// signing checkpoints with key; every replica must use the same key. An
// existing checkpoint must verify with key. Like Open it returns once the
// entries already integrated are covered by a published checkpoint. Unlike
// Open it does not share one appender per process: the driver coordinates
// every appender, here and elsewhere.
func OpenStorage(ctx context.Context, st Storage, key Key, opts *Options) (*Log, error) {
	o := opts.withDefaults()
	o.CheckpointInterval = max(o.CheckpointInterval, st.MinCheckpointInterval)
	if key.Signer == nil || key.Verifier == nil {
		return nil, errors.New("tlog: OpenStorage needs a signer and its verifier")
	}
	if st.Driver == nil || st.Fetcher == nil {
		return nil, fmt.Errorf("tlog: storage %s: no driver or no fetcher", st.Name)
	}
	if err := checkKeyPair(key); err != nil {
		return nil, err
	}
	c := NewClientFrom(st.Fetcher, key.Verifier)
	// An existing log must be this key's: never sign on top of another.
	if _, err := c.Checkpoint(ctx); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tlog: log in %s: %w", st.Name, err)
	}
	seq, err := startSequencer(st.Driver, st.Antispam, key, o)
	if err != nil {
		return nil, fmt.Errorf("tlog: open %s: %w", st.Name, err)
	}
	seq.close = st.Close
	l := &Log{name: st.Name, fetch: st.Fetcher, key: key, seq: seq, client: c, onSequenced: o.OnSequenced}
	if err := l.awaitPublished(ctx, o.PollInterval); err != nil {
		_ = l.Close(ctx)
		return nil, err
	}
	return l, nil
}

package logfixture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// DefaultPopular is how many distinct shared subjects (base images) the
// documents name, one each.
const DefaultPopular = 100

// RunSize is how many documents share one run ID (a TaskRun of five steps
// stores six entries).
const RunSize = 6

// Document is document i of a fixture: a DSSE envelope, signed by s, of a
// SLSA v1 provenance statement of about 1.4 KiB whose subjects are a unique
// artifact (Artifact(prefix, i)) and one of popular shared base images
// (Base(i % popular)), with invocation ID RunID(prefix, i).
func Document(ctx context.Context, s signing.Signer, prefix string, i, popular int) ([]byte, error) {
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject": []map[string]any{
			{"name": fmt.Sprintf("%s-artifact-%d", prefix, i), "digest": map[string]string{"sha256": hexOf(fmt.Sprintf("%s-artifact-%d", prefix, i))}},
			{"name": fmt.Sprintf("base-%d", i%popular), "digest": map[string]string{"sha256": hexOf(fmt.Sprintf("base-%d", i%popular))}},
		},
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/buildtypes/tekton-pipelinerun/v1", "externalParameters": map[string]any{"pipeline": "bench", "padding": string(bytes.Repeat([]byte("x"), 300))}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://stepseal.dev/bench"}, "metadata": map[string]any{"invocationId": RunID(prefix, i)}},
		},
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, payload, s)
	if err != nil {
		return nil, err
	}
	return json.Marshal(env)
}

// Artifact is the unique subject of document i.
func Artifact(prefix string, i int) string {
	return "sha256:" + hexOf(fmt.Sprintf("%s-artifact-%d", prefix, i))
}

// Base is shared subject k (0 <= k < popular).
func Base(k int) string { return "sha256:" + hexOf(fmt.Sprintf("base-%d", k)) }

// RunID is the run of document i.
func RunID(prefix string, i int) string { return fmt.Sprintf("%s-run-%d", prefix, i/RunSize) }

func hexOf(s string) string { return store.Digest([]byte(s))[len("sha256:"):] }

// Options configure Build.
type Options struct {
	// N documents are appended: 0..N-1, skipping those already in the
	// log (a Build that stopped half-way resumes).
	N int
	// Signer signs the documents; Allow must hold its verifier.
	Signer signing.Signer
	Allow  logserver.Keys
	// Prefix names the documents (default "fixture"); Popular is the
	// number of shared subjects (default DefaultPopular).
	Prefix  string
	Popular int
	// Origin is the log's name when DIR/log.key is created (default
	// "stepseal.dev/log").
	Origin string
	// Writers is how many appends are in flight (default 4096), and
	// BatchMaxSize how many Tessera sequences together (default Writers).
	Writers      int
	BatchMaxSize uint
	// BatchMaxAge is how long Tessera waits to fill a batch (default 1s):
	// the POSIX driver's cost per batch is mostly fsyncs of the files it
	// rewrites, so large batches build a log many times faster.
	BatchMaxAge time.Duration
	// Progress, if set, is called about every second with the documents
	// appended so far.
	Progress func(done int, elapsed time.Duration)
}

// Report is what Build did.
type Report struct {
	Appended int // new leaves
	Existing int // documents already in the log
	Elapsed  time.Duration
	// Checkpoint is the log's checkpoint after the last append.
	Checkpoint tlog.Checkpoint
}

// Build appends documents 0..N-1 to the served log in dir through
// logserver.Server.Add, with Writers appends in flight, and closes it.
// Every answer's proof is verified against its checkpoint by the server
// before it is returned, and again here.
func Build(ctx context.Context, dir string, o Options) (Report, error) {
	if o.Signer == nil || len(o.Allow) == 0 {
		return Report{}, errors.New("logfixture: a signer and the keys the log allows")
	}
	if o.Prefix == "" {
		o.Prefix = "fixture"
	}
	if o.Popular <= 0 {
		o.Popular = DefaultPopular
	}
	if o.Origin == "" {
		o.Origin = "stepseal.dev/log"
	}
	if o.Writers <= 0 {
		o.Writers = 4096
	}
	if o.BatchMaxSize == 0 {
		o.BatchMaxSize = uint(o.Writers)
	}
	if o.BatchMaxAge == 0 {
		o.BatchMaxAge = time.Second
	}
	key, err := logserver.KeyInDir(dir, o.Origin)
	if err != nil {
		return Report{}, err
	}
	s, err := logserver.Open(ctx, dir, key, logserver.Options{Keys: o.Allow, MaxInFlight: o.Writers,
		Log: &tlog.Options{BatchMaxSize: o.BatchMaxSize, BatchMaxAge: o.BatchMaxAge}})
	if err != nil {
		return Report{}, err
	}
	cps := &checkpoints{v: key.Verifier}
	start := time.Now()
	var next, appended, existing atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) { once.Do(func() { firstErr = err }) }
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range o.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.N {
					return
				}
				d, err := Document(ctx, o.Signer, o.Prefix, i, o.Popular)
				if err != nil {
					fail(fmt.Errorf("document %d: %w", i, err))
					cancel()
					return
				}
				a, err := s.Add(ctx, d)
				if err == nil {
					err = cps.verify(d, a)
				}
				if err != nil {
					fail(fmt.Errorf("document %d: %w", i, err))
					cancel()
					return
				}
				if a.Created {
					appended.Add(1)
				} else {
					existing.Add(1)
				}
			}
		}()
	}
	stop := make(chan struct{})
	if o.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					o.Progress(int(appended.Load()+existing.Load()), time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rep := Report{Appended: int(appended.Load()), Existing: int(existing.Load()), Elapsed: time.Since(start), Checkpoint: s.Checkpoint()}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer ccancel()
	if err := s.Close(cctx); err != nil && firstErr == nil {
		firstErr = err
	}
	runtime.GC()
	return rep, firstErr
}

// checkpoints verifies the checkpoints answers carry, each distinct one
// once (a batch of appends shares one).
type checkpoints struct {
	v    note.Verifier
	mu   sync.Mutex
	last tlog.Checkpoint
}

func (c *checkpoints) parse(raw []byte) (tlog.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Raw != nil && bytes.Equal(c.last.Raw, raw) {
		return c.last, nil
	}
	cp, err := tlog.ParseCheckpoint(raw, c.v)
	if err != nil {
		return cp, err
	}
	c.last = cp
	return cp, nil
}

// verify checks that a's record is d's and its inclusion proof against
// a's checkpoint, signed by the log's key.
func (c *checkpoints) verify(d []byte, a logserver.Added) error {
	cp, err := c.parse(a.Checkpoint)
	if err != nil {
		return err
	}
	e, _, err := tlogstore.ParseRecord(a.Record)
	if err != nil {
		return err
	}
	if want := store.Digest(d); e.Digest != want || a.Digest != want {
		return fmt.Errorf("%w: answered with %s (record %s)", tlog.ErrInclusion, a.Digest, e.Digest)
	}
	return tlog.VerifyInclusionProof(a.Record, a.Index, cp, a.Hashes)
}

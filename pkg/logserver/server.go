package logserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/sync/singleflight"

	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// DefaultBatchMaxAge is the server's default tlog.Options.BatchMaxAge.
const DefaultBatchMaxAge = 100 * time.Millisecond

// Options configure a Server. Keys is required.
type Options struct {
	// Keys is the allow-list: a document must be signed by one of them.
	Keys Keys
	// Log tunes the log's batching and checkpoints (BatchMaxAge defaults
	// to DefaultBatchMaxAge).
	Log *tlog.Options
	// MaxInFlight bounds the appends in flight; more are pushed back with
	// ErrBusy (HTTP 503 and Retry-After). Default 4096.
	MaxInFlight int
	// Witnesses, if set, must cosign every checkpoint before it is
	// published (see witnessing.go); WitnessTimeout bounds one round of
	// requests to them (default 5s).
	Witnesses      *witness.Policy
	WitnessTimeout time.Duration
	// Storage, if set, keeps the log instead of DIR/log: several servers
	// (replicas, each with its own DIR for the index) append to it at once
	// (pkg/logserver/awslog). They must share the log key.
	Storage *tlog.Storage
}

// Server is a served log: the log in DIR/log, the index in DIR/index.db.
// Add appends documents; Entry and Search answer with proofs; Handler
// serves all of it and the log's tiles over HTTP.
type Server struct {
	dir   string
	log   *tlog.Log
	idx   *Index
	opts  Options
	fetch tlog.Fetcher
	sem   chan struct{}

	flight singleflight.Group

	prover *prover

	mu      sync.Mutex
	cp      tlog.Checkpoint // the index covers this tree
	indexed uint64          // the index's watermark, as the follower last committed it
	tails   []*tailBundle   // the last entry bundles the follower read
	// keepBundles is how many of them are kept: enough for the bundles
	// one batch of appends spans.
	keepBundles int
	changed     chan struct{} // closed when cp moves
	wake        chan struct{}

	watch *witnessWatch // nil without witnesses

	cancel context.CancelFunc
	done   chan struct{}
}

// Open opens (creating) the served log in dir, signing checkpoints with
// key, and returns once the index has caught up with the log.
func Open(ctx context.Context, dir string, key tlog.Key, opts Options) (*Server, error) {
	if len(opts.Keys) == 0 {
		return nil, errors.New("logserver: no key allowed to sign documents")
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 4096
	}
	// Writers arrive one HTTP request at a time: a batch that waits up to
	// 100 ms (one checkpoint interval) for others fills better than
	// pkg/tlog's 5 ms default, and Tessera rewrites the partial entry
	// bundle and tiles, with fsyncs, once per batch.
	lo := tlog.Options{}
	if opts.Log != nil {
		lo = *opts.Log
	}
	if lo.BatchMaxAge == 0 {
		lo.BatchMaxAge = DefaultBatchMaxAge
	}
	watch := witnessLogOptions(opts, &lo)
	// The follower indexes appends as soon as they are sequenced, while
	// Tessera waits to publish the checkpoint that covers them.
	wake := make(chan struct{}, 1)
	onSequenced := lo.OnSequenced
	lo.OnSequenced = func() {
		select {
		case wake <- struct{}{}:
		default:
		}
		if onSequenced != nil {
			onSequenced()
		}
	}
	opts.Log = &lo
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l, err := openLog(ctx, dir, key, opts)
	if err != nil {
		// Tessera publishes a checkpoint on start: say why the witnesses
		// did not cosign it.
		if watch != nil {
			watch.mu.Lock()
			refusal, failed := watch.refusal, watch.failed
			watch.mu.Unlock()
			switch {
			case refusal != nil:
				return nil, fmt.Errorf("%w: %w", refusal, err)
			case failed != nil:
				return nil, fmt.Errorf("%w: %v: %w", ErrWitness, failed, err)
			}
		}
		return nil, err
	}
	idx, err := OpenIndex(filepath.Join(dir, "index.db"))
	if err != nil {
		l.Close(ctx)
		return nil, err
	}
	s := &Server{dir: dir, log: l, idx: idx, opts: opts, watch: watch, fetch: l.Fetcher(),
		sem: make(chan struct{}, opts.MaxInFlight), changed: make(chan struct{}), wake: wake, done: make(chan struct{})}
	s.prover = newProver(s.fetch.ReadTile)
	s.keepBundles = 2
	if bs := int(lo.BatchMaxSize); bs > layout.EntryBundleWidth {
		s.keepBundles = (bs+layout.EntryBundleWidth-1)/layout.EntryBundleWidth + 1
	}
	if err := s.catchUp(ctx); err != nil {
		idx.Close()
		l.Close(ctx)
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.follow(bg)
	return s, nil
}

// Close stops the follower, the log and the index.
func (s *Server) Close(ctx context.Context) error {
	s.cancel()
	<-s.done
	err := s.log.Close(ctx)
	if cerr := s.idx.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// Log is the served log.
func (s *Server) Log() *tlog.Log { return s.log }

// Index is the server's search index.
func (s *Server) Index() *Index { return s.idx }

// follow keeps the index up with the log: woken when appends are sequenced
// and when writers wait for a checkpoint, and every second in case a leaf
// came from elsewhere.
func (s *Server) follow(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
		if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
			// A reader waiting for the index times out with its own
			// context; the next round retries.
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// catchUp indexes every leaf between the watermark and the current
// checkpoint, up to maxApplyRows leaves per transaction, then publishes the
// checkpoint as the one the index is complete for. Then it indexes the
// entries integrated since (durable, and in the next checkpoint Tessera
// publishes): it is woken as soon as appends are sequenced, so their rows
// are committed while Tessera waits to publish that checkpoint, and their
// writers need not wait for the index after it. A row beyond the published
// checkpoint is never served before a checkpoint covers it (Search stops
// at the checkpoint; answer waits for it).
func (s *Server) catchUp(ctx context.Context) error {
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return err
	}
	w, err := s.idx.Watermark()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.indexed = w
	s.mu.Unlock()
	if w, err = s.indexTo(ctx, w, cp.Size, fmt.Sprintf("the checkpoint %s", cp)); err != nil {
		return err
	}
	s.offer(cp)
	integrated, err := s.log.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if integrated <= w {
		return nil
	}
	if _, err = s.indexTo(ctx, w, integrated, fmt.Sprintf("the %d entries integrated", integrated)); err != nil {
		return err
	}
	// Writers whose checkpoint was published while these rows were being
	// committed offered it too early: offer the newest the log verified.
	if latest, ok := s.log.Client().Latest(); ok {
		s.offer(latest)
	}
	return nil
}

// offer makes cp (verified) the checkpoint answers are built on if it is
// newer and the index covers it.
func (s *Server) offer(cp tlog.Checkpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cp.Size < s.cp.Size || cp.Size > s.indexed || (cp.Size == s.cp.Size && s.cp.Raw != nil) {
		return
	}
	s.cp = cp
	close(s.changed)
	s.changed = make(chan struct{})
}

// indexTo indexes the leaves from w (the watermark) to size, which what
// names, and returns the new watermark. The rows of up to maxApplyRows
// leaves (several entry bundles when a batch of appends spans them) are
// committed in one transaction, then the bundles are kept for answers.
func (s *Server) indexTo(ctx context.Context, w, size uint64, what string) (uint64, error) {
	for w < size {
		var rows []Row
		var read []*tailBundle
		next := w
		for next < size && len(rows) < maxApplyRows {
			bi := next / layout.EntryBundleWidth
			raw, err := s.fetch.ReadEntryBundle(ctx, bi, layout.PartialTileSize(0, bi, size))
			if err != nil {
				return w, fmt.Errorf("%w: entry bundle %d: %w", ErrUnavailable, bi, err)
			}
			leaves, err := tlog.ParseEntryBundle(raw)
			if err != nil {
				return w, fmt.Errorf("%w: entry bundle %d: %w", ErrIndexCorrupt, bi, err)
			}
			offsets := bundleOffsets(leaves)
			base := bi * layout.EntryBundleWidth
			end := min(base+uint64(len(leaves)), size)
			if end <= next {
				return w, fmt.Errorf("%w: entry bundle %d has %d entries, %s needs more", ErrIndexCorrupt, bi, len(leaves), what)
			}
			tail := &tailBundle{index: bi, leaves: leaves[:end-base], offsets: offsets[:end-base], entries: make([]*store.Entry, end-base)}
			for i := next; i < end; i++ {
				r, e := parseRow(i, leaves[i-base])
				r.Offset = offsets[i-base]
				rows = append(rows, r)
				tail.entries[i-base] = e
			}
			read = append(read, tail)
			next = end
		}
		if _, err := s.idx.Apply(rows, next); err != nil {
			return w, err
		}
		w = next
		s.mu.Lock()
		s.indexed = w
		s.tails = keepTails(s.tails, s.keepBundles, read...)
		s.mu.Unlock()
	}
	return w, nil
}

// maxApplyRows bounds the rows the follower commits in one transaction:
// one commit (two fsyncs) per batch of appends rather than per entry
// bundle, and a bounded transaction when it catches up with a long log.
// Rebuilding a 100 000-entry index took 10–11 s of CPU at one bundle (256
// rows) per transaction, 8–9 s at 1 024 and 6–7 s at 4 096, with a peak RSS
// of 139, 171 and 230–256 MiB: 1 024 keeps the rebuild within the server's
// memory budget.
const maxApplyRows = 1024

// bundleOffsets is where each leaf's length prefix starts in its bundle.
func bundleOffsets(leaves [][]byte) []uint32 {
	out := make([]uint32, len(leaves))
	off := 0
	for i, l := range leaves {
		out[i] = uint32(off)
		off += 2 + len(l)
	}
	return out
}

// rowOf is the index row of leaf i: every leaf names its subjects, so the
// index is a function of the log.
func rowOf(i uint64, leaf []byte) Row {
	r, _ := parseRow(i, leaf)
	return r
}

// parseRow is rowOf and, for a leaf that is a store record, the record.
func parseRow(i uint64, leaf []byte) (Row, *store.Entry) {
	e, complete, err := tlogstore.ParseRecord(leaf)
	if err != nil {
		return Row{Index: i, Skip: err.Error()}, nil
	}
	if !complete {
		return Row{Index: i, Skip: "record binds a subject list kept outside the log"}, &e
	}
	return Row{Index: i, Kind: e.Kind, RunID: e.RunID, Digest: e.Digest, Subjects: e.Subjects}, &e
}

// keepTails adds ts to tails, each in place of an older read of its
// bundle (whose parsed records it keeps), and keeps the n newest bundles:
// answers for a batch of appends that filled bundles and started the next
// find all their leaves. tails is not modified.
func keepTails(tails []*tailBundle, n int, ts ...*tailBundle) []*tailBundle {
	out := slices.Clone(tails)
	for _, t := range ts {
		out = slices.DeleteFunc(out, func(o *tailBundle) bool {
			if o.index != t.index {
				return false
			}
			for k := range min(len(o.entries), len(t.entries)) {
				if t.entries[k] == nil {
					t.entries[k] = o.entries[k]
				}
			}
			return true
		})
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *tailBundle) int { return cmp.Compare(a.index, b.index) })
	return out[max(0, len(out)-n):]
}

// tailBundle is an entry bundle the follower read last (the log's newest
// entries, which a burst of appends answers for) with each leaf's record as
// parsed for the index: answers for them need neither re-read the partial
// bundle nor re-parse the record. A nil entry is a leaf that is no record.
type tailBundle struct {
	index   uint64
	leaves  [][]byte
	offsets []uint32
	entries []*store.Entry
}

// Checkpoint is the checkpoint the index is complete for.
func (s *Server) Checkpoint() tlog.Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp
}

// waitIndexed waits until the index covers log entry i.
func (s *Server) waitIndexed(ctx context.Context, i uint64) error {
	for {
		s.mu.Lock()
		size, ch := s.cp.Size, s.changed
		s.mu.Unlock()
		if size > i {
			return nil
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the index to cover log entry %d: %w", ErrUnavailable, i, ctx.Err())
		case <-ch:
		}
	}
}

// Added is the result of Add.
type Added struct {
	Answer
	// Created is false when the document was already in the log.
	Created bool
}

// Add derives the entry of doc (Derive), appends it unless its digest is
// already in the log, and returns its index, checkpoint and proof. The
// same document added any number of times, at once or not, gives one leaf
// and the same index.
func (s *Server) Add(ctx context.Context, doc []byte) (Added, error) {
	e, err := Derive(ctx, doc, s.opts.Keys)
	if err != nil {
		return Added{}, err
	}
	if i, ok, err := s.idx.Lookup(e.Digest); err != nil {
		return Added{}, err
	} else if ok {
		a, err := s.answer(ctx, e.Digest, i)
		return Added{Answer: a}, err
	}
	v, err, _ := s.flight.Do(e.Digest, func() (any, error) {
		// Another flight of this digest may have finished between the
		// lookup and this one starting: look again.
		if i, ok, err := s.idx.Lookup(e.Digest); err != nil || ok {
			return Added{Answer: Answer{Proof: tlogstore.Proof{Index: i}}}, err
		}
		select {
		case s.sem <- struct{}{}:
			defer func() { <-s.sem }()
		default:
			return nil, fmt.Errorf("%w: %d appends in flight", ErrBusy, cap(s.sem))
		}
		rec, err := tlogstore.EncodeInlineRecord(e)
		if err != nil {
			return nil, fmt.Errorf("%w: document %s: %w", ErrDocument, e.Digest, err)
		}
		// The append outlives a writer that hangs up: others may be
		// waiting on this flight.
		// A witness refusal cuts the wait short (appendContext).
		actx, cancel := s.appendContext(ctx)
		defer cancel()
		i, cp, err := s.log.AppendCovered(actx, rec)
		if err != nil {
			if errors.Is(err, tessera.ErrPushback) {
				return nil, fmt.Errorf("%w: %w", ErrBusy, err)
			}
			return nil, fmt.Errorf("%w: appending document %s: %w", ErrUnavailable, e.Digest, witnessCause(actx, err))
		}
		// The checkpoint Tessera published for the entry: the follower
		// has most likely indexed the entry already.
		s.offer(cp)
		if err := s.waitIndexed(actx, i); err != nil {
			return nil, err
		}
		first, ok, err := s.idx.Lookup(e.Digest)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: document %s appended as log entry %d is not in the index", ErrIndexCorrupt, e.Digest, i)
		}
		return Added{Answer: Answer{Proof: tlogstore.Proof{Index: first}}, Created: first == i}, nil
	})
	if err != nil {
		return Added{}, err
	}
	added := v.(Added)
	a, err := s.answer(ctx, e.Digest, added.Index)
	if err != nil {
		return Added{}, err
	}
	return Added{Answer: a, Created: added.Created}, nil
}

// Entry returns the answer for the document with digest.
func (s *Server) Entry(ctx context.Context, digest string) (Answer, error) {
	if !store.ValidDigest(digest) {
		return Answer{}, fmt.Errorf("%w: %q is not sha256:<64 hex>", ErrDocument, digest)
	}
	i, ok, err := s.idx.Lookup(digest)
	if err != nil {
		return Answer{}, err
	}
	if !ok {
		return Answer{}, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	return s.answer(ctx, digest, i)
}

// answer builds the proof of log entry i, which must hold digest, against
// the checkpoint the index is complete for.
func (s *Server) answer(ctx context.Context, digest string, i uint64) (Answer, error) {
	cp := s.Checkpoint()
	if i >= cp.Size {
		// The row is committed but the follower has not yet published the
		// checkpoint it indexed; a row beyond the log for long is corrupt.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.waitIndexed(wctx, i)
		cancel()
		if err != nil {
			n, ierr := s.log.IntegratedSize(ctx)
			if ierr != nil {
				// The log's size could not be read (its database is
				// down): no verdict on the row.
				return Answer{}, fmt.Errorf("%w: document %s is log entry %d, beyond the published checkpoint (%d entries), and the log's size could not be read: %w", ErrUnavailable, digest, i, s.Checkpoint().Size, ierr)
			}
			if i < n {
				return Answer{}, fmt.Errorf("%w: document %s is log entry %d, not yet covered by a published checkpoint (%d entries)", ErrUnavailable, digest, i, s.Checkpoint().Size)
			}
			return Answer{}, fmt.Errorf("%w: the index maps %s to log entry %d, beyond the log's %d entries", ErrIndexCorrupt, digest, i, s.Checkpoint().Size)
		}
		cp = s.Checkpoint()
	}
	r := newReader(s, cp)
	res, err := r.result(ctx, i)
	if err != nil {
		return Answer{}, err
	}
	if res.digest != digest {
		return Answer{}, fmt.Errorf("%w: the index maps %s to log entry %d, which holds %s", ErrIndexCorrupt, digest, i, res.digest)
	}
	return Answer{Digest: digest, Proof: tlogstore.Proof{Index: i, Record: res.Record, Checkpoint: cp.Raw, Hashes: res.Hashes}}, nil
}

// reader reads leaves and builds inclusion proofs against one checkpoint,
// caching the last entry bundle it read.
type reader struct {
	s     *Server
	cp    tlog.Checkpoint
	tails []*tailBundle

	bundleIndex uint64
	bundle      [][]byte
}

func newReader(s *Server, cp tlog.Checkpoint) *reader {
	s.mu.Lock()
	tails := s.tails
	s.mu.Unlock()
	return &reader{s: s, cp: cp, tails: tails}
}

type readResult struct {
	Result
	digest string
	entry  store.Entry
}

func (r *reader) result(ctx context.Context, i uint64) (readResult, error) {
	return r.resultAt(ctx, i, -1)
}

// leafAt reads leaf i of a full (immutable) entry bundle at offset,
// without reading the whole bundle; ok is false when it cannot.
func (r *reader) leafAt(i uint64, offset int64) ([]byte, bool) {
	bi := i / layout.EntryBundleWidth
	if offset < 0 || (bi+1)*layout.EntryBundleWidth > r.cp.Size || r.s.log.Dir() == "" {
		return nil, false
	}
	f, err := os.Open(filepath.Join(r.s.log.Dir(), layout.EntriesPath(bi, 0)))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	var n [2]byte
	if _, err := f.ReadAt(n[:], offset); err != nil {
		return nil, false
	}
	leaf := make([]byte, int(n[0])<<8|int(n[1]))
	if _, err := f.ReadAt(leaf, offset+2); err != nil {
		return nil, false
	}
	return leaf, true
}

func (r *reader) resultAt(ctx context.Context, i uint64, offset int64) (readResult, error) {
	if i >= r.cp.Size {
		return readResult{}, fmt.Errorf("%w: log entry %d, checkpoint %s", ErrIndexCorrupt, i, r.cp)
	}
	bi := i / layout.EntryBundleWidth
	for _, t := range r.tails {
		if off := i % layout.EntryBundleWidth; t.index == bi && off < uint64(len(t.leaves)) {
			// An index row's offset must still be right, though it
			// is not needed here.
			if offset >= 0 && offset != int64(t.offsets[off]) {
				return readResult{}, fmt.Errorf("%w: the index puts log entry %d at offset %d of entry bundle %d, it is at %d", ErrIndexCorrupt, i, offset, bi, t.offsets[off])
			}
			// Entry i never changes once in the log; finishParsed still
			// proves it is in r.cp's tree.
			return r.finishParsed(ctx, i, t.leaves[off], t.entries[off])
		}
	}
	if leaf, ok := r.leafAt(i, offset); ok {
		// finish checks the leaf against the tree: a wrong offset is
		// ErrIndexCorrupt, never a wrong answer.
		return r.finish(ctx, i, leaf)
	}
	if r.bundle == nil || r.bundleIndex != bi {
		raw, err := r.s.fetch.ReadEntryBundle(ctx, bi, layout.PartialTileSize(0, bi, r.cp.Size))
		if err != nil {
			return readResult{}, fmt.Errorf("%w: entry bundle %d: %w", ErrUnavailable, bi, err)
		}
		if r.bundle, err = tlog.ParseEntryBundle(raw); err != nil {
			return readResult{}, fmt.Errorf("%w: entry bundle %d: %w", ErrIndexCorrupt, bi, err)
		}
		r.bundleIndex = bi
	}
	off := i % layout.EntryBundleWidth
	if off >= uint64(len(r.bundle)) {
		return readResult{}, fmt.Errorf("%w: log entry %d: entry bundle %d has %d entries", ErrIndexCorrupt, i, bi, len(r.bundle))
	}
	return r.finish(ctx, i, r.bundle[off])
}

func (r *reader) finish(ctx context.Context, i uint64, leaf []byte) (readResult, error) {
	return r.finishParsed(ctx, i, leaf, nil)
}

// finishParsed proves leaf i in r.cp's tree; e, when not nil, is leaf as
// parsed before (by the follower, from these bytes).
func (r *reader) finishParsed(ctx context.Context, i uint64, leaf []byte, e *store.Entry) (readResult, error) {
	if e == nil {
		pe, _, err := tlogstore.ParseRecord(leaf)
		if err != nil {
			return readResult{}, fmt.Errorf("%w: log entry %d: %w", ErrIndexCorrupt, i, err)
		}
		e = &pe
	}
	hashes, err := r.s.prover.inclusion(ctx, i, r.cp.Size)
	if err != nil {
		return readResult{}, fmt.Errorf("%w: inclusion proof of log entry %d in %s: %w", ErrUnavailable, i, r.cp, err)
	}
	if err := tlog.VerifyInclusionProof(leaf, i, r.cp, hashes); err != nil {
		// A node remembered wrong (a tile changed on disk) must not
		// spoil later answers: read the tiles again next time.
		r.s.prover.forget()
		return readResult{}, fmt.Errorf("%w: log entry %d as read: %w", ErrIndexCorrupt, i, err)
	}
	return readResult{Result: Result{Index: i, Record: leaf, Hashes: hashes}, digest: e.Digest, entry: *e}, nil
}

// Search answers q from cursor on with at most limit results, each with
// its record and inclusion proof against the answer's checkpoint. Results
// are in log index order; Next continues after them (or, when More is
// false, after the whole checkpoint's tree).
func (s *Server) Search(ctx context.Context, q Query, from uint64, limit int) (SearchAnswer, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = DefaultLimit
	}
	cp := s.Checkpoint()
	ans := SearchAnswer{Checkpoint: cp.Raw, Results: []Result{}}
	if from > cp.Size {
		from = cp.Size
	}
	rows, more, err := s.idx.Search(q, from, cp.Size, limit)
	if err != nil {
		return SearchAnswer{}, err
	}
	r := newReader(s, cp)
	for _, row := range rows {
		res, err := r.resultAt(ctx, row.Index, int64(row.Offset))
		if err != nil {
			return SearchAnswer{}, err
		}
		if res.digest != row.Digest || !q.matches(res.entry) {
			return SearchAnswer{}, fmt.Errorf("%w: the index answers %s with log entry %d as %s, the log holds %s (%s, run %q, %d subjects)",
				ErrIndexCorrupt, q, row.Index, row.Digest, res.digest, res.entry.Kind, res.entry.RunID, len(res.entry.Subjects))
		}
		ans.Results = append(ans.Results, res.Result)
	}
	ans.More = more
	if more {
		ans.Next = FormatCursor(rows[len(rows)-1].Index + 1)
	} else {
		ans.Next = FormatCursor(cp.Size)
	}
	return ans, nil
}

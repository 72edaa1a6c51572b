// Command logload measures a served log: appends per second with every
// answer's proof verified, append latency, and search latency, against
// `stepseal log serve` (-mode stepseal) or Tessera's POSIX conformance
// server (-mode tessera: POST /add answers once the entry is sequenced;
// -mode tessera-proof: then waits for a checkpoint covering it and
// verifies its inclusion from the served tiles, what a stepseal answer
// carries). Used by hack/bench/log.sh.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/logfixture"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:18080/", "log server URL")
	mode := flag.String("mode", "stepseal", "stepseal, tessera, tessera-proof, or search (only the searches, over n documents appended before with this prefix)")
	logKey := flag.String("log-key", "", "the log's public note key file")
	writerKey := flag.String("writer-key", "", "private key that signs the documents (stepseal mode)")
	n := flag.Int("n", 10000, "documents to append")
	clients := flag.Int("c", 256, "concurrent writers")
	searches := flag.Int("searches", 2000, "searches after the appends (stepseal mode)")
	popular := flag.Int("popular", 100, "distinct shared subjects (base images); each document names one")
	prefix := flag.String("prefix", "a", "document name prefix (another prefix appends new documents)")
	complete := flag.Int("complete", 3, "popular subjects read to their last page after the searches")
	cpuProfile := flag.String("cpuprofile", "", "write the load generator's CPU profile to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "logload:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*server, *mode, *logKey, *writerKey, *n, *clients, *searches, *popular, *complete, *prefix); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "logload:", err)
		os.Exit(1)
	}
}

// doc is document i: the same bytes hack/bench/logfixture appends, so a
// search mode run over a fixture knows what each search must answer.
func doc(ctx context.Context, s signing.Signer, prefix string, i, popular int) ([]byte, error) {
	return logfixture.Document(ctx, s, prefix, i, popular)
}

type result struct {
	Mode          string  `json:"mode"`
	Appends       int     `json:"appends"`
	Clients       int     `json:"clients"`
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"appendsPerSecond"`
	P50ms         float64 `json:"appendP50ms"`
	P99ms         float64 `json:"appendP99ms"`
	MaxMs         float64 `json:"appendMaxMs"`
	Pushbacks     int64   `json:"pushbacks"`
	Searches      int     `json:"searches,omitempty"`
	SearchP50ms   float64 `json:"searchP50ms,omitempty"`
	SearchP99ms   float64 `json:"searchP99ms,omitempty"`
	SearchResults int     `json:"searchResults,omitempty"`
	// CompleteSubjects popular subjects were read to their last page,
	// CompleteResults entries in all.
	CompleteSubjects int `json:"completeSubjects,omitempty"`
	CompleteResults  int `json:"completeResults,omitempty"`
}

// popularCount is how many of documents 0..n-1 name shared subject k.
func popularCount(n, popular, k int) int {
	if k >= n {
		return 0
	}
	return (n-1-k)/popular + 1
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
}

func run(server, mode, logKey, writerKey string, n, clients, searches, popular, completeSubjects int, prefix string) error {
	ctx := context.Background()
	v, err := tlog.ReadVerifier(logKey)
	if err != nil {
		return err
	}
	var signer signing.Signer
	if writerKey != "" {
		if signer, err = signing.LoadSigner(writerKey, nil); err != nil {
			return err
		}
	} else {
		k, _ := signing.Generate(signing.ED25519)
		signer, _ = signing.NewSigner(k)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 16}, Timeout: time.Minute}
	var add func(ctx context.Context, c *logserver.Client, d []byte) error
	var pushbacks atomic.Int64
	switch mode {
	case "stepseal":
		add = func(ctx context.Context, c *logserver.Client, d []byte) error {
			for {
				_, err := c.Add(ctx, d)
				if errors.Is(err, logserver.ErrBusy) {
					pushbacks.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				return err
			}
		}
	case "tessera", "tessera-proof":
		u, _ := url.Parse(server)
		f, _ := tclient.NewHTTPFetcher(u, hc)
		lc := tlog.NewClientFrom(f, v)
		w := &waiter{c: lc}
		add = func(ctx context.Context, _ *logserver.Client, d []byte) error {
			resp, err := hc.Post(u.JoinPath("add").String(), "application/octet-stream", bytes.NewReader(d))
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
			}
			idx, err := strconv.ParseUint(string(b), 10, 64)
			if err != nil || mode == "tessera" {
				return err
			}
			cp, err := w.covering(ctx, idx)
			if err != nil {
				return err
			}
			return lc.VerifyInclusion(ctx, d, idx, cp)
		}
	case "search":
	default:
		return fmt.Errorf("mode %q", mode)
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	// One verifying client for all writers, as in one process: each new
	// checkpoint's consistency with the last is checked once, not per writer.
	c, err := logserver.NewClient(server, v, hc)
	if err != nil {
		return err
	}
	start := time.Now()
	if mode == "search" {
		clients = 0
	}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				d, err := doc(ctx, signer, prefix, i, popular)
				if err == nil {
					t0 := time.Now()
					err = add(ctx, c, d)
					lat[i] = time.Since(t0)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("document %d: %w", i, err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	el := time.Since(start)
	r := result{Mode: mode, Appends: n, Clients: clients, Seconds: el.Seconds(), PerSecond: float64(n) / el.Seconds(),
		P50ms: pct(lat, 0.5), P99ms: pct(lat, 0.99), MaxMs: pct(lat, 1), Pushbacks: pushbacks.Load()}
	if mode == "search" {
		r = result{Mode: mode}
	}
	if (mode == "stepseal" || mode == "search") && searches > 0 {
		c, _ := logserver.NewClient(server, v, hc)
		sl := make([]time.Duration, searches)
		for i := range searches {
			// Half a popular subject (one of the shared base images),
			// half a unique one (one document's artifact).
			k, j := rand.IntN(popular), rand.IntN(n)
			q := logserver.Query{Subject: logfixture.Base(k)}
			if i%2 == 1 {
				q = logserver.Query{Subject: logfixture.Artifact(prefix, j)}
			}
			t0 := time.Now()
			p, err := c.Search(ctx, q, 0, 20)
			sl[i] = time.Since(t0)
			if err != nil {
				return err
			}
			// Complete: a unique subject answers exactly its document
			// (regenerated: the same bytes, signed again), a popular one
			// a full first page when it has that many entries.
			if i%2 == 1 {
				want, err := doc(ctx, signer, prefix, j, popular)
				if err != nil {
					return err
				}
				if len(p.Results) != 1 || p.More || p.Results[0].Entry.Digest != store.Digest(want) {
					return fmt.Errorf("search for %s (document %d, %s): %d results, want exactly that document", q, j, store.Digest(want), len(p.Results))
				}
			} else if expect := popularCount(n, popular, k); len(p.Results) != min(20, expect) || p.More != (expect > 20) {
				return fmt.Errorf("search for %s: %d results (more: %t), want %d of at least %d", q, len(p.Results), p.More, min(20, expect), expect)
			}
			r.SearchResults += len(p.Results)
		}
		// Complete to the last page: every entry of a few popular
		// subjects, all results verified, no index twice.
		for k := range min(completeSubjects, popular) {
			q := logserver.Query{Subject: logfixture.Base(k)}
			seen := map[uint64]bool{}
			var cpSize uint64
			if _, err := c.SearchAll(ctx, q, 0, logserver.MaxLimit, func(v logserver.VerifiedResult) error {
				if seen[v.Index] {
					return fmt.Errorf("search for %s: log entry %d twice", q, v.Index)
				}
				seen[v.Index] = true
				return nil
			}); err != nil {
				return err
			}
			if latest, ok := c.Log().Latest(); ok {
				cpSize = latest.Size
			}
			expect := popularCount(n, popular, k)
			if len(seen) < expect || (cpSize == uint64(n) && len(seen) != expect) {
				return fmt.Errorf("search for %s to its last page: %d entries, want %d", q, len(seen), expect)
			}
			r.CompleteSubjects++
			r.CompleteResults += len(seen)
		}
		r.Searches, r.SearchP50ms, r.SearchP99ms = searches, pct(sl, 0.5), pct(sl, 0.99)
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	return nil
}

// waiter shares one checkpoint poller among writers waiting for their
// entry to be covered.
type waiter struct {
	c  *tlog.Client
	mu sync.Mutex
	cp tlog.Checkpoint
	at time.Time
}

func (w *waiter) covering(ctx context.Context, idx uint64) (tlog.Checkpoint, error) {
	for {
		w.mu.Lock()
		if w.cp.Size <= idx && time.Since(w.at) > 20*time.Millisecond {
			cp, err := w.c.Checkpoint(ctx)
			if err != nil {
				w.mu.Unlock()
				return tlog.Checkpoint{}, err
			}
			w.cp, w.at = cp, time.Now()
		}
		cp := w.cp
		w.mu.Unlock()
		if cp.Size > idx {
			return cp, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

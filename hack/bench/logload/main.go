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
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/stepseal/stepseal/pkg/logserver"
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
	flag.Parse()
	if err := run(*server, *mode, *logKey, *writerKey, *n, *clients, *searches, *popular, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "logload:", err)
		os.Exit(1)
	}
}

func doc(ctx context.Context, s signing.Signer, prefix string, i, popular int) ([]byte, error) {
	run := fmt.Sprintf("%s-run-%d", prefix, i/6)
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject": []map[string]any{
			{"name": fmt.Sprintf("%s-artifact-%d", prefix, i), "digest": map[string]string{"sha256": hexOf(fmt.Sprintf("%s-artifact-%d", prefix, i))}},
			{"name": fmt.Sprintf("base-%d", i%popular), "digest": map[string]string{"sha256": hexOf(fmt.Sprintf("base-%d", i%popular))}},
		},
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/buildtypes/tekton-pipelinerun/v1", "externalParameters": map[string]any{"pipeline": "bench", "padding": string(bytes.Repeat([]byte("x"), 300))}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://stepseal.dev/bench"}, "metadata": map[string]any{"invocationId": run}},
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

func hexOf(s string) string { return store.Digest([]byte(s))[len("sha256:"):] }

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
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
}

func run(server, mode, logKey, writerKey string, n, clients, searches, popular int, prefix string) error {
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
			q := logserver.Query{Subject: "sha256:" + hexOf(fmt.Sprintf("base-%d", rand.IntN(popular)))}
			if i%2 == 1 {
				q = logserver.Query{Subject: "sha256:" + hexOf(fmt.Sprintf("%s-artifact-%d", prefix, rand.IntN(n)))}
			}
			t0 := time.Now()
			p, err := c.Search(ctx, q, 0, 20)
			sl[i] = time.Since(t0)
			if err != nil {
				return err
			}
			if len(p.Results) == 0 {
				return fmt.Errorf("search for %s found nothing", q)
			}
			r.SearchResults += len(p.Results)
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

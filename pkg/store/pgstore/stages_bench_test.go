package pgstore_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// TestBenchServedPutStages shows where a Put on a served log waits. At
// each concurrency (1, 2, 8, 32 writers) it times, on fresh signed
// documents: the whole Put (intent row, append to the served log, row
// completed), the served log's Add alone (HTTP, the server's checks, its
// batch and the checkpoint covering the entry, the answer's proof
// verified), and one PostgreSQL write transaction alone (advisory lock,
// insert, commit with fsync on). The log server runs in this process
// with `log serve`'s defaults. Off unless STEPSEAL_BENCH_PUTSTAGES is set
// (documents per writer count, e.g. 64):
//
//	STEPSEAL_BENCH_PUTSTAGES=64 go test -count=1 -run TestBenchServedPutStages -v ./pkg/store/pgstore/
func TestBenchServedPutStages(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("STEPSEAL_BENCH_PUTSTAGES"))
	if n <= 0 {
		t.Skip("set STEPSEAL_BENCH_PUTSTAGES=N to run")
	}
	ctx := context.Background()
	pg := pgtest.Start(t, pgtest.Options{Durable: true})
	log := newServedLog(t)
	docs := &documents{signer: log.signer}
	client := log.client(t)
	dsn := pg.NewDatabase(t)
	st, err := pgstore.OpenServed(ctx, dsn, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average before: %s", strings.TrimSpace(string(load)))
	seq := 0
	for _, writers := range []int{1, 2, 8, 32} {
		mk := func() []store.Entry {
			es := make([]store.Entry, n)
			for i := range es {
				seq++
				es[i] = docs.doc(t, store.Entry{Kind: store.KindLink, Name: "build", RunID: "run-" + strconv.Itoa(seq), Data: []byte(strconv.Itoa(seq)), Subjects: []string{subject(seq)}})
			}
			return es
		}
		put := timeEach(t, writers, n, mk(), func(e store.Entry) error { _, err := st.Put(ctx, e); return err })
		add := timeEach(t, writers, n, mk(), func(e store.Entry) error { _, err := client.Add(ctx, e.Data); return err })
		tx := timeEach(t, writers, n, mk(), func(e store.Entry) error {
			raw, _ := hex.DecodeString(strings.TrimPrefix(store.Digest(e.Data), "sha256:"))
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(binary.BigEndian.Uint64(raw))); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO stepseal_entries (digest, kind, name, run_id, data, log_index) VALUES ($1, 'link', 'x', '', $2, NULL)`, raw, e.Data)
				return err
			})
		})
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("%2d writers: Put %s; served log Add %s; one PostgreSQL write transaction %s; load average %s",
			writers, put, add, tx, strings.Join(strings.Fields(string(load))[:3], " "))
	}
}

type latencies struct {
	rate     float64
	p50, p99 time.Duration
}

func (l latencies) String() string {
	return fmt.Sprintf("%.0f/s p50 %v p99 %v", l.rate, l.p50.Round(100*time.Microsecond), l.p99.Round(100*time.Microsecond))
}

// timeEach runs f on each of es from writers goroutines and returns the
// rate and latency percentiles.
func timeEach(t *testing.T, writers, n int, es []store.Entry, f func(store.Entry) error) latencies {
	t.Helper()
	var (
		mu  sync.Mutex
		lat []time.Duration
		wg  sync.WaitGroup
	)
	next := make(chan store.Entry)
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for e := range next {
				t0 := time.Now()
				if err := f(e); err != nil {
					t.Error(err)
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	for _, e := range es[:n] {
		next <- e
	}
	close(next)
	wg.Wait()
	el := time.Since(start)
	slices.Sort(lat)
	return latencies{rate: float64(len(lat)) / el.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
}

package logserver

import (
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/store"
)

// BenchmarkIndexSearch is the engine alone: a first page of 20 rows for a
// subject in an index of 100 000 entries with 3 subjects each (one of 100
// shared base images, a unique artifact, and a run shared by 6).
func BenchmarkIndexSearch(b *testing.B) {
	const n = 100000
	x, err := OpenIndex(filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	rows := make([]Row, 0, 1000)
	for i := range n {
		rows = append(rows, Row{Index: uint64(i), Kind: store.KindProvenance, RunID: fmt.Sprint("run-", i/6),
			Digest: subject(fmt.Sprint("doc-", i)), Offset: uint32(i%256) * 2400,
			Subjects: []string{subject(fmt.Sprint("artifact-", i)), subject(fmt.Sprint("base-", i%100))}})
		if len(rows) == cap(rows) {
			if _, err := x.Apply(rows, uint64(i+1)); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("index of %d entries built; heap in use %d KiB", n, ms.HeapInuse>>10)
	for _, c := range []struct {
		name string
		q    func(i int) Query
	}{
		{"popular", func(i int) Query { return Query{Subject: subject(fmt.Sprint("base-", i%100))} }},
		{"unique", func(i int) Query { return Query{Subject: subject(fmt.Sprint("artifact-", (i*7919)%n))} }},
		{"run", func(i int) Query { return Query{RunID: fmt.Sprint("run-", (i*31)%(n/6))} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				rows, _, err := x.Search(c.q(i), 0, n, 20)
				if err != nil || len(rows) == 0 {
					b.Fatal(len(rows), err)
				}
			}
		})
	}
}

// BenchmarkServeAppend is an append burst against the real handler over
// loopback HTTP: 128 writers per GOMAXPROCS (256 on two cores), each
// posting a signed provenance document and verifying the answer's
// checkpoint, consistency and inclusion proof with one shared client, as
// hack/bench/logload does. Documents are signed before the timer starts.
// Profile with -cpuprofile, -blockprofile and -mutexprofile; the rate
// depends on the host's load, so read the profiles and the CPU time per
// append (reported as cpu-ms/op from the process's rusage), not ns/op.
func BenchmarkServeAppend(b *testing.B) {
	f := newFixture(b, nil)
	docs := make([][]byte, b.N)
	for i := range docs {
		docs[i] = provenance(b, f.signer, fmt.Sprint("bench-run-", i/6), fmt.Sprint("bench-artifact-", i), fmt.Sprint("base-", i%100))
	}
	// Keep-alive connections for every writer, as logload's client has.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}, Timeout: time.Minute}
	c, err := NewClient(f.http.URL, f.key.Verifier, hc)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(128)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, err := c.Add(ctx, docs[i]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

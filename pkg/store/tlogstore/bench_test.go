package tlogstore

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
)

// Puts from 64 goroutines (a controller signing many steps at once).
func BenchmarkPutConcurrent(b *testing.B) {
	s := openStore(b, b.TempDir(), testKey(b))
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if _, err := s.Put(ctx, link(fmt.Sprintf("s%d", i), fmt.Sprintf(`{"link":%d,"pad":"%0900d"}`, i, 0), subject(i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// Fetch of a 1 kB link from a store of 2,000: index lookup, checkpoint
// verification, entry bundle read, inclusion proof from tiles, data check.
func BenchmarkFetch(b *testing.B) {
	s := openStore(b, b.TempDir(), testKey(b))
	var digests []string
	for i := 0; i < 2000; i += 250 {
		errs := make(chan error, 250)
		ds := make(chan string, 250)
		for j := i; j < i+250; j++ {
			go func(j int) {
				d, err := s.Put(ctx, link(fmt.Sprintf("s%d", j), fmt.Sprintf(`{"link":%d,"pad":"%0900d"}`, j, 0), subject(j)))
				errs <- err
				ds <- d
			}(j)
		}
		for j := 0; j < 250; j++ {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			digests = append(digests, <-ds)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, err := s.Fetch(ctx, digests[(i*7919)%len(digests)])
		if err != nil || e.Kind != store.KindLink {
			b.Fatal(err)
		}
	}
}

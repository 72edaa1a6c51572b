package admission

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkDecide measures one Pod's decision for a signed image on the
// real Distribution registry over loopback: warm (the verdict cached, what
// every later Pod of a digest costs) and cold (a new Decider each time:
// manifest, signature and its verification, as on first sight of a
// digest).
func BenchmarkDecide(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	p := pod(signed.String())
	b.Run("warm", func(b *testing.B) {
		d := e.decider(nil)
		if dec := d.Decide(ctx, p, nil); !dec.Allowed {
			b.Fatal(dec.Err())
		}
		b.ResetTimer()
		for b.Loop() {
			if dec := d.Decide(ctx, p, nil); !dec.Allowed {
				b.Fatal(dec.Err())
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			d := e.decider(nil)
			b.StartTimer()
			if dec := d.Decide(ctx, p, nil); !dec.Allowed {
				b.Fatal(dec.Err())
			}
		}
	})
}

// BenchmarkCacheHeap reports the heap 10 000 cached verdicts hold (a cache
// sized 10 000, filled with distinct digests of one rule, as a cluster
// running 10 000 distinct images would): MiB in all and bytes per entry.
func BenchmarkCacheHeap(b *testing.B) {
	const entries = 10000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := NewCache(CacheOptions{Size: entries})
		ctx := context.Background()
		for i := range entries {
			k := cacheKey{
				digest: fmt.Sprintf("registry.example.com/team/app-%05d@sha256:%064x", i, i),
				rule:   "apps", trust: "root=3,snapshot=1042", platform: "eu", policy: "sha256:" + strings.Repeat("f", 64),
			}
			if _, err := c.do(ctx, k, func(context.Context) (verdict, error) { return verdict{}, nil }); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() != entries {
			b.Fatalf("%d entries", c.Len())
		}
		held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(held/(1<<20), "MiB")
		b.ReportMetric(held/entries, "B/entry")
		runtime.KeepAlive(c)
	}
}

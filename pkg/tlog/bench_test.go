package tlog

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// Appends per second, one at a time: each waits for its own checkpoint, so
// Options.CheckpointInterval (100ms) bounds the rate.
func BenchmarkAppendSequential(b *testing.B) {
	l := openLog(b, b.TempDir(), testKey(b, "bench"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Append(ctx, fmt.Appendf(nil, "entry %d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// Concurrent Appends (64 goroutines on the machine's cores) share batches
// and checkpoints.
func BenchmarkAppendConcurrent(b *testing.B) {
	l := openLog(b, b.TempDir(), testKey(b, "bench"))
	var n atomic.Int64
	b.SetParallelism(64 / max(1, testingProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, fmt.Appendf(nil, "entry %d", n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// AppendMany of 256 entries (one Tessera batch, one checkpoint).
func BenchmarkAppendMany256(b *testing.B) {
	l := openLog(b, b.TempDir(), testKey(b, "bench"))
	batch := make([][]byte, 256)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = fmt.Appendf(nil, "entry %d-%d", i, j)
		}
		if _, err := l.AppendMany(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "appends/s")
}

const benchLogSize = 10000

func benchLog(b *testing.B) (*Client, Checkpoint) {
	k := testKey(b, "bench")
	dir := b.TempDir()
	l := openLog(b, dir, k)
	for i := 0; i < benchLogSize; i += 256 {
		appendN(b, l, fmt.Sprintf("batch%d", i), min(256, benchLogSize-i))
	}
	c := NewClient(dir, k.Verifier)
	cp, err := c.Checkpoint(ctx)
	if err != nil || cp.Size != benchLogSize {
		b.Fatalf("%v %v", cp, err)
	}
	return c, cp
}

// Inclusion of one entry in a 10,000-entry log: proof built from the tiles
// on disk, then verified (what a Fetch from the store pays per entry).
func BenchmarkVerifyInclusion(b *testing.B) {
	c, cp := benchLog(b)
	b.Run("tiles+verify", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			idx := uint64(i*7919) % benchLogSize
			data := fmt.Appendf(nil, "batch%d-%d", idx/256*256, idx%256)
			if err := c.VerifyInclusion(ctx, data, idx, cp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proof-only", func(b *testing.B) {
		p, err := c.InclusionProof(ctx, 4242, cp.Size)
		if err != nil {
			b.Fatal(err)
		}
		data := []byte("batch4096-146")
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := VerifyInclusionProof(data, 4242, cp, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checkpoint", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := ParseCheckpoint(cp.Raw, c.v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

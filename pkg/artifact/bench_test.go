package artifact

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchTree writes a tree of about mib MiB: half in four big files, half in
// 64 KiB files spread over directories of 128. It returns the byte count.
func benchTree(tb testing.TB, dir string, mib int) int64 {
	tb.Helper()
	rng := rand.NewChaCha8([32]byte{1})
	half := int64(mib) << 19
	var total int64
	writeRandom := func(p string, size int64) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		buf := make([]byte, min(size, 1<<20))
		for left := size; left > 0; left -= int64(len(buf)) {
			if left < int64(len(buf)) {
				buf = buf[:left]
			}
			rng.Read(buf)
			if _, err := f.Write(buf); err != nil {
				tb.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
		total += size
	}
	for i := range 4 {
		writeRandom(filepath.Join(dir, "big", fmt.Sprintf("blob%d", i)), half/4)
	}
	const small = 64 << 10
	for i := range int(half / small) {
		writeRandom(filepath.Join(dir, fmt.Sprintf("d%03d", i/128), fmt.Sprintf("f%04d", i)), small)
	}
	return total
}

func benchMiB() int {
	if n, err := strconv.Atoi(os.Getenv("STEPSEAL_BENCH_MIB")); err == nil && n > 0 {
		return n
	}
	return 64
}

// BenchmarkHash hashes a mixed tree (STEPSEAL_BENCH_MIB, default 64) with
// GOMAXPROCS workers; compare its MB/s with BenchmarkSHA256 times the cores.
func BenchmarkHash(b *testing.B) {
	dir := b.TempDir()
	size := benchTree(b, dir, benchMiB())
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(size)
			cpu := cpuTime()
			for b.Loop() {
				if _, err := Hash(context.Background(), dir, "ws", Options{Workers: workers}); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, size, cpu)
		})
	}
	b.Run("exclude=3", func(b *testing.B) {
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			if _, err := Hash(context.Background(), dir, "ws", Options{Exclude: []string{"*.log", "node_modules/", "!keep.log"}}); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, size, cpu)
	})
}

// BenchmarkSHA256 is the machine's single-core SHA-256 rate (SHA-NI when the
// CPU has it), on 1 MiB blocks already in memory.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	h := sha256.New()
	b.SetBytes(int64(len(buf)))
	cpu := cpuTime()
	for b.Loop() {
		h.Write(buf)
	}
	reportCPU(b, int64(len(buf)), cpu)
}

// cpuTime is the process's user+system CPU time so far. Reported per byte
// it is what "rate per core used" means, and unlike wall time it does not
// drop when other work shares the machine's cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, bytesPerOp int64, start time.Duration) {
	if d := cpuTime() - start; d > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/d.Seconds(), "MB/cpu-s")
	}
}

package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// genLayer is a large layer that is never held in memory: a 1 MiB random
// block repeated up to size bytes.
type genLayer struct {
	block  []byte
	size   int64
	digest v1.Hash
}

func newGenLayer(t testing.TB, size int64) *genLayer {
	t.Helper()
	l := &genLayer{block: make([]byte, 1<<20), size: size}
	if _, err := rand.Read(l.block); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	rc, _ := l.Compressed()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	l.digest = sum(h)
	return l
}

type genReader struct {
	l   *genLayer
	off int64
}

func (r *genReader) Read(p []byte) (int, error) {
	if r.off >= r.l.size {
		return 0, io.EOF
	}
	n := copy(p, r.l.block[r.off%int64(len(r.l.block)):])
	if rest := r.l.size - r.off; int64(n) > rest {
		n = int(rest)
	}
	r.off += int64(n)
	return n, nil
}

func (l *genLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *genLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *genLayer) Size() (int64, error)                 { return l.size, nil }
func (l *genLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
func (l *genLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *genLayer) Compressed() (io.ReadCloser, error)   { return io.NopCloser(&genReader{l: l}), nil }

func encryptedGenLayer(t testing.TB, size int64) v1.Layer {
	t.Helper()
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: newGenLayer(t, size)})
	if err != nil {
		t.Fatal(err)
	}
	pol := newPolicy(t, 1, []platformSpec{{name: "p", key: testKey(t, p256, "bench")}}, []string{"**", "p"})
	enc, err := EncryptFor(ctx, pol, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := enc.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls[0]
}

// primitive measures one of ocicrypt's pipeline primitives on 1 MiB chunks.
func primitive(name string) func(b []byte) {
	key := make([]byte, 32)
	switch name {
	case "AES-256-CTR":
		blk, _ := aes.NewCipher(key)
		s := cipher.NewCTR(blk, make([]byte, 16))
		return func(b []byte) { s.XORKeyStream(b, b) }
	case "HMAC-SHA256":
		h := hmac.New(sha256.New, key)
		return func(b []byte) { h.Write(b) }
	case "SHA-256":
		var h hash.Hash = sha256.New()
		return func(b []byte) { h.Write(b) }
	}
	panic(name)
}

var primitives = []string{"AES-256-CTR", "HMAC-SHA256", "SHA-256"}

func BenchmarkPrimitives(b *testing.B) {
	for _, name := range primitives {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 1<<20)
			f := primitive(name)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				f(buf)
			}
		})
	}
}

// nsPerByte times a primitive over n bytes.
func nsPerByte(name string, n int) float64 {
	buf := make([]byte, 1<<20)
	f := primitive(name)
	start := time.Now()
	for i := 0; i < n>>20; i++ {
		f(buf)
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// BenchmarkEncryptPipeline: EncryptFor's layer stream (SHA-256 of the
// plaintext, AES-256-CTR, HMAC-SHA256, SHA-256 of the ciphertext) read to
// io.Discard, against the bound the primitives measured in the same run
// allow: one core does all four (1/(aes+hmac+2*sha)); two cores at best
// split that work evenly.
func BenchmarkEncryptPipeline(b *testing.B) {
	const size = 256 << 20
	l := encryptedGenLayer(b, size)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		rc, err := l.Compressed()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
	b.StopTimer()
	elapsed := b.Elapsed().Seconds() / float64(b.N)
	ours := size / elapsed / 1e6
	var aesNs, hmacNs, shaNs float64 = nsPerByte("AES-256-CTR", 256<<20), nsPerByte("HMAC-SHA256", 256<<20), nsPerByte("SHA-256", 256<<20)
	one := 1e3 / (aesNs + hmacNs + 2*shaNs)
	cores := min(runtime.GOMAXPROCS(0), 4)
	bound := one * float64(cores)
	// No stage can be split: the slowest single primitive caps it too.
	if cap := 1e3 / max(aesNs, hmacNs, shaNs); bound > cap {
		bound = cap
	}
	b.ReportMetric(1e3/aesNs, "aes-MB/s")
	b.ReportMetric(1e3/hmacNs, "hmac-MB/s")
	b.ReportMetric(1e3/shaNs, "sha256-MB/s")
	b.ReportMetric(one, "bound1core-MB/s")
	b.ReportMetric(bound, fmt.Sprintf("bound%dcore-MB/s", cores))
	b.ReportMetric(ours, "pipeline-MB/s")
	b.ReportMetric(100*ours/bound, "pct-of-bound")
}

// TestEncryptConstantMemory encrypts a 1 GiB layer and checks the heap stays
// within a few chunks.
func TestEncryptConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB stream")
	}
	const size = 1 << 30
	l := encryptedGenLayer(t, size)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	start := time.Now()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	close(stop)
	<-done
	if err != nil || n != size {
		t.Fatalf("read %d, %v", n, err)
	}
	d, err := l.Digest() // known from the stream: no second pass
	if err != nil || d.Hex == "" {
		t.Fatal(d, err)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("1 GiB encrypted in %v (%.0f MB/s), heap in use grew by at most %d KiB", time.Since(start), size/time.Since(start).Seconds()/1e6, grew>>10)
	if grew > 32<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 1 GiB", grew>>20)
	}
}

package admission

import (
	"context"
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

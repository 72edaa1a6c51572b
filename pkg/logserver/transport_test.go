package logserver

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// TestClientReusesConnections: 32 concurrent Adds, four rounds, through a
// client made with a nil http.Client (NewTransport) open at most one
// connection per Add in flight, reused across rounds; the same load on
// http.DefaultTransport (2 idle connections per host) dials again for
// most Adds of every round, which is what the controller's replicas did.
func TestClientReusesConnections(t *testing.T) {
	const writers, rounds = 32, 4
	f := newFixture(t, nil)
	run := func(t *testing.T, hc *http.Client, round0 int) int64 {
		var dials atomic.Int64
		hs := httptest.NewUnstartedServer(f.srv.Handler())
		hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				dials.Add(1)
			}
		}
		hs.Start()
		defer hs.Close()
		c, err := NewClient(hs.URL, f.key.Verifier, hc)
		if err != nil {
			t.Fatal(err)
		}
		for r := range rounds {
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					doc := provenance(t, f.signer, "run", fmt.Sprintf("conn-%d-%d-%d", round0, r, w))
					if _, err := c.Add(ctx, doc); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		}
		return dials.Load()
	}
	tuned := run(t, nil, 0)
	plain := run(t, &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, 1)
	t.Logf("%d Adds from %d writers: %d connections with NewTransport, %d with the default transport", writers*rounds, writers, tuned, plain)
	if tuned > writers {
		t.Errorf("NewTransport: %d connections for %d Adds from %d writers; want at most %d (reused across rounds)", tuned, writers*rounds, writers, writers)
	}
	if plain <= tuned {
		t.Errorf("the default transport opened %d connections, NewTransport %d: the test does not tell them apart", plain, tuned)
	}
}

package awslog

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/stepseal/stepseal/internal/mysqltest"
)

// sequencer stands in for the appender the claims decorate (Tessera's,
// which TestLogReplicasAWS runs for real): it counts the entries it is
// given and assigns increasing indexes after a delay.
type sequencer struct {
	calls atomic.Int64
	next  atomic.Uint64
	fail  atomic.Bool
}

func (s *sequencer) add(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
	s.calls.Add(1)
	return func() (tessera.Index, error) {
		time.Sleep(50 * time.Millisecond)
		if s.fail.Load() {
			return tessera.Index{}, errors.New("sequencing failed")
		}
		return tessera.Index{Index: s.next.Add(1) - 1}, nil
	}
}

func TestClaims(t *testing.T) {
	ctx := context.Background()
	db := mysqltest.Start(t)
	dsn := db.NewDatabase(t)
	// Two replicas: two claim tables' clients on one database, one
	// sequencer (the log they share).
	c1, err := newClaims(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := newClaims(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	seq := &sequencer{}
	add1, add2 := c1.Decorator()(seq.add), c2.Decorator()(seq.add)
	// atOnce adds e n times at once, alternating the two replicas.
	atOnce := func(t *testing.T, n int, e *tessera.Entry) []tessera.Index {
		var wg sync.WaitGroup
		got := make([]tessera.Index, n)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				add := add1
				if i%2 == 1 {
					add = add2
				}
				idx, err := add(ctx, e)()
				if err != nil {
					t.Error(err)
				}
				got[i] = idx
			}()
		}
		wg.Wait()
		return got
	}

	t.Run("same entry at once: one append", func(t *testing.T) {
		e := tessera.NewEntry([]byte("document 1"))
		got := atOnce(t, 16, e)
		if n := seq.calls.Load(); n != 1 {
			t.Fatalf("%d appends of one entry, want 1", n)
		}
		dups := 0
		for _, g := range got {
			if g.Index != got[0].Index {
				t.Fatalf("indexes %v", got)
			}
			if g.IsDup {
				dups++
			}
		}
		if dups != len(got)-1 {
			t.Fatalf("%d duplicates of %d answers, want %d", dups, len(got), len(got)-1)
		}
	})

	t.Run("failed append releases the claim", func(t *testing.T) {
		e := tessera.NewEntry([]byte("document 2"))
		seq.fail.Store(true)
		if _, err := add1(ctx, e)(); err == nil {
			t.Fatal("a failed append succeeded")
		}
		seq.fail.Store(false)
		before := seq.calls.Load()
		idx, err := add2(ctx, e)()
		if err != nil || idx.IsDup || seq.calls.Load() != before+1 {
			t.Fatalf("after a failed append: %+v, %v, %d appends", idx, err, seq.calls.Load()-before)
		}
	})

	t.Run("stale claim taken over once", func(t *testing.T) {
		e := tessera.NewEntry([]byte("document 3"))
		// A replica claimed it 20 s ago and died before recording an index.
		if _, err := c1.db.ExecContext(ctx, `INSERT INTO StepsealClaim (h, claimed_at) VALUES (?, NOW(3) - INTERVAL 20 SECOND)`, e.Identity()); err != nil {
			t.Fatal(err)
		}
		before := seq.calls.Load()
		got := atOnce(t, 8, e)
		if n := seq.calls.Load() - before; n != 1 {
			t.Fatalf("%d appends after the stale claim, want 1", n)
		}
		for _, g := range got {
			if g.Index != got[0].Index {
				t.Fatalf("indexes %v", got)
			}
		}
	})

	t.Run("fresh claim of a live owner is waited for", func(t *testing.T) {
		e := tessera.NewEntry([]byte("document 4"))
		if _, err := c1.db.ExecContext(ctx, `INSERT INTO StepsealClaim (h) VALUES (?)`, e.Identity()); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			c1.db.ExecContext(ctx, `UPDATE StepsealClaim SET idx = 4242 WHERE h = ?`, e.Identity())
		}()
		before := seq.calls.Load()
		idx, err := add2(ctx, e)()
		if err != nil || idx.Index != 4242 || !idx.IsDup || seq.calls.Load() != before {
			t.Fatalf("waiting on a live claim: %+v, %v, %d appends", idx, err, seq.calls.Load()-before)
		}
	})
}

package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
)

// TestPostgresDown: PostgreSQL stops for 8 s while 8 writers store
// documents over loopback TCP. Every Put while it is down fails with
// store.ErrUnavailable (unable to check, never a refusal), no error shows
// the password, every Put reported stored is there after the restart, and
// every failed one succeeds when retried.
func TestPostgresDown(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 15 s")
	}
	s := pgtest.Start(t, pgtest.Options{TCP: true})
	f := newFixture(t, s)
	f.dsn = s.TCPDSN(f.db)
	st, err := pgstore.Open(context.Background(), f.dsn, f.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())

	var (
		down     atomic.Bool // set after Stop returned, cleared before Start
		mu       sync.Mutex
		stored   []store.Entry
		failed   []store.Entry
		downErrs int
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		n        atomic.Int64
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := n.Add(1)
				e := store.Entry{Kind: store.KindLink, Name: fmt.Sprintf("step-%d", i), RunID: "run", Data: []byte(fmt.Sprintf("doc %d", i)), Subjects: []string{subject(int(i))}}
				wasDown := down.Load()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := st.Put(ctx, e)
				cancel()
				isDown := down.Load()
				mu.Lock()
				switch {
				case err == nil:
					if wasDown && isDown {
						t.Errorf("Put of %s succeeded while PostgreSQL was down", e.Name)
					}
					stored = append(stored, e)
				default:
					if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, reject.ErrUnableToCheck) || errors.Is(err, reject.ErrRefused) {
						t.Errorf("Put during the outage: %v, want store.ErrUnavailable only", err)
					}
					if strings.Contains(err.Error(), s.Password) {
						t.Errorf("the error shows the password: %v", err)
					}
					if wasDown && isDown {
						downErrs++
					}
					failed = append(failed, e)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(250 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	time.Sleep(8 * time.Second)
	down.Store(false)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d Puts stored, %d failed (%d while PostgreSQL was down)", len(stored), len(failed), downErrs)
	if downErrs == 0 {
		t.Fatal("no Put failed while PostgreSQL was down")
	}
	ctx := context.Background()
	for _, e := range stored {
		got, err := st.Fetch(ctx, store.Digest(e.Data))
		if err != nil || got.Name != e.Name {
			t.Fatalf("%s was reported stored; after the restart: %+v, %v", e.Name, got, err)
		}
	}
	// Retried together, they share log checkpoints.
	var retry sync.WaitGroup
	for _, e := range failed {
		retry.Add(1)
		go func() {
			defer retry.Done()
			if _, err := st.Put(ctx, e); err != nil {
				t.Errorf("retry of %s after the restart: %v", e.Name, err)
			}
		}()
	}
	retry.Wait()
	all, err := st.List(ctx, store.Filter{})
	if err != nil || len(all) != len(stored)+len(failed) {
		t.Fatalf("List after retries: %d entries, %v; want %d", len(all), err, len(stored)+len(failed))
	}
}

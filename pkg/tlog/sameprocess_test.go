package tlog

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestTwoLogsOneDirInProcess opens the same directory twice in one process
// (two stores of one controller, two replicas in one test binary) and
// appends through both at once: every entry gets its own index, and both
// handles read what the other wrote.
func TestTwoLogsOneDirInProcess(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, "example.com/same-process")
	a, b := openLog(t, dir, k), openLog(t, dir, k)
	const n = 40
	var mu sync.Mutex
	seen := map[uint64]string{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if i%2 == 1 {
				l = b
			}
			data := fmt.Sprintf("entry-%d", i)
			idx, err := l.Append(ctx, []byte(data))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := seen[idx]; ok {
				t.Errorf("index %d handed out twice: %q and %q", idx, prev, data)
			}
			seen[idx] = data
		}()
	}
	wg.Wait()
	for idx, data := range seen {
		for _, l := range []*Log{a, b} {
			got, err := l.Entry(ctx, idx)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != data {
				t.Fatalf("entry %d = %q, want %q", idx, got, data)
			}
		}
	}
}

// TestSharedSequencerClose: closing one of two Logs on a directory leaves
// the other appending; the closed one refuses; another key is refused while
// the directory is open; the last Close releases it for a fresh Open.
func TestSharedSequencerClose(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, "example.com/shared-close")
	a, err := Open(ctx, dir, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := openLog(t, dir, k)
	if _, err := Open(ctx, dir, testKey(t, "example.com/shared-close"), nil); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("second key on an open directory: %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, []byte("after close")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
	if _, err := b.Append(ctx, []byte("still open")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c := openLog(t, dir, k)
	if cp, err := c.Checkpoint(ctx); err != nil || cp.Size != 1 {
		t.Fatalf("reopened: %+v, %v", cp, err)
	}
}

// TestReopenWhileClosing: an Open of a directory whose last Log is still
// shutting down waits for it, so two appenders never run at once.
func TestReopenWhileClosing(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, "example.com/reopen")
	for i := range 5 {
		a, err := Open(ctx, dir, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Append(ctx, fmt.Appendf(nil, "a-%d", i)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Close(ctx) }()
		b, err := Open(ctx, dir, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		idx, err := b.Append(ctx, fmt.Appendf(nil, "b-%d", i))
		if err != nil || idx != uint64(2*i+1) {
			t.Fatalf("round %d: index %d, %v", i, idx, err)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

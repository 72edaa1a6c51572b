package backends

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// Stores opens a directory once; Close releases the tlog directory's lock
// (a second store cannot open it before, can after) and forgets every
// store, so the next Dir or Log opens afresh.
func TestStoresOpenOnceAndClose(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var o Stores
	d1, err := o.Dir(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := o.Dir(filepath.Join(dir, "store")); err != nil || d2 != d1 {
		t.Fatalf("second Dir: %p, %v; want the first store %p", d2, err, d1)
	}
	logDir := filepath.Join(dir, "tlog")
	l1, err := o.Log(ctx, logDir, "", "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	if l2, err := o.Log(ctx, logDir, "", "example.com/log"); err != nil || l2 != l1 {
		t.Fatalf("second Log: %p, %v; want the first store %p", l2, err, l1)
	}
	var _ store.IndexedPutter = l1
	var _ store.Closer = l1

	key, err := tlog.ReadKey(filepath.Join(logDir, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := tlogstore.Open(ctx, logDir, key, nil); err == nil {
		_ = s.Close(ctx)
		t.Fatal("a second store opened the tlog directory Stores holds")
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := tlogstore.Open(ctx, logDir, key, nil)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d3, err := o.Dir(filepath.Join(dir, "store")); err != nil || d3 == d1 {
		t.Fatalf("Dir after Close: %p, %v; want a new store", d3, err)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

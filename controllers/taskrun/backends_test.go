package taskrun

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/pkg/store"
)

// orderStore records the order of Puts and fails one named entry.
type orderStore struct {
	store.Store
	mu   sync.Mutex
	seen []string
	fail string
}

func (o *orderStore) Put(ctx context.Context, e store.Entry) (string, error) {
	if e.Name == o.fail {
		return "", errors.New("disk full")
	}
	o.mu.Lock()
	o.seen = append(o.seen, e.Name)
	o.mu.Unlock()
	return o.Store.Put(ctx, e)
}

// The provenance (last entry) is stored only after every link is: a crash
// or failure in between must never leave a provenance without its links.
func TestPutAllStoresTheLastEntryLast(t *testing.T) {
	ds, err := store.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var entries []store.Entry
	for _, n := range []string{"a.link", "b.link", "c.link", "d.link", "run.provenance"} {
		entries = append(entries, store.Entry{Kind: store.KindLink, Name: n, RunID: "r", Data: []byte(n)})
	}
	o := &orderStore{Store: ds, fail: "c.link"}
	if _, err := PutAll(context.Background(), []lifecycle.Backend{{Name: "dir", Store: o}}, entries); err == nil {
		t.Fatal("a failed link Put was not reported")
	}
	for _, n := range o.seen {
		if n == "run.provenance" {
			t.Fatalf("provenance stored although link c.link failed: %v", o.seen)
		}
	}
	o.fail, o.seen = "", nil
	if _, err := PutAll(context.Background(), []lifecycle.Backend{{Name: "dir", Store: o}}, entries); err != nil {
		t.Fatal(err)
	}
	if len(o.seen) != 5 || o.seen[4] != "run.provenance" {
		t.Fatalf("Put order %v, want the provenance last", o.seen)
	}
}

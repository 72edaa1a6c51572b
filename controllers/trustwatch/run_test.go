package trustwatch

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

// TestRunPicksUpConfigChange: the watcher starts with no repository (the
// ConfigMap not read yet) and refreshes as soon as trust.url appears,
// without waiting for a refresh interval.
func TestRunPicksUpConfigChange(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, site := t.TempDir(), t.TempDir()
	r, err := repo.Init(ctx, dir, repo.InitOptions{RootSigners: []signing.Signer{key(t)}, TargetsSigners: []signing.Signer{key(t)}, Online: key(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(ctx, site); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(repo.Handler(site))
	defer srv.Close()
	var cur atomic.Pointer[settings.Config]
	cur.Store(settings.Defaults())
	w, err := New(Options{Config: cur.Load})
	if err != nil {
		t.Fatal(err)
	}
	go w.Run(ctx)
	time.Sleep(100 * time.Millisecond)
	if w.Root() != nil {
		t.Fatal("a root with no repository configured")
	}
	cfg := settings.Defaults()
	cfg.Trust.URL, cfg.Trust.Root, cfg.Trust.CacheDir = srv.URL+"/metadata", string(r.RootBytes()), t.TempDir()
	cur.Store(cfg)
	for deadline := time.Now().Add(5 * time.Second); w.Root() == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("trust.url set, but no refresh within 5 s (interval is 5 min)")
		}
	}
}

package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
)

// A consumer without a cache (a Task's Pod) starts from the repository's
// 1.root.json when it is the one RootSHA256 pins, and walks the signed
// root chain from there; a repository or mirror handing out another root,
// or a cache holding another one, is ErrRootPin and nothing is written.
func TestRootPin(t *testing.T) {
	s, _ := paymentsRepo(t)
	d := sha256.Sum256(s.get("1.root.json"))
	pin := hex.EncodeToString(d[:])
	s.rotateRoot()
	s.publishRoot()
	s.publish()

	c, err := NewClient(ctx, ClientOptions{Source: s.url(), CacheDir: t.TempDir(), RootSHA256: pin})
	if err != nil {
		t.Fatal(err)
	}
	mustRefresh(t, c)
	if b, err := os.ReadFile(filepath.Join(c.o.CacheDir, "root.json")); err != nil || rootVersion(b) != 2 {
		t.Fatalf("trusted root after the refresh: v%d, %v", rootVersion(b), err)
	}

	// Another repository (its own keys) under the same pin.
	other, _ := paymentsRepo(t)
	dir := t.TempDir()
	c, err = NewClient(ctx, ClientOptions{Source: other.url(), CacheDir: dir, RootSHA256: pin})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Refresh(ctx)
	wantErr(t, err, ErrRootPin)
	if !errors.Is(err, reject.ErrRefused) || !strings.Contains(err.Error(), pin) {
		t.Fatalf("%v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "root.json")); err == nil {
		t.Fatal("a refused root was cached")
	}

	// A bootstrap root given beside the pin must be the pinned one too.
	c, err = NewClient(ctx, ClientOptions{Source: s.url(), CacheDir: t.TempDir(), RootSHA256: pin, BootstrapRoot: other.get("1.root.json")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Refresh(ctx)
	wantErr(t, err, ErrRootPin)

	// A cache that already trusts another repository's root.
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root.json"), other.get("1.root.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = NewClient(ctx, ClientOptions{Source: s.url(), CacheDir: dir, RootSHA256: pin})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Refresh(ctx)
	wantErr(t, err, ErrRootPin)
}

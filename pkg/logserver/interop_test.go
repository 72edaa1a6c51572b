package logserver

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestVolumeTesseraFsck: STEPSEAL_VOLUME_DOCS signed documents (default
// 640) go through the server from 64 concurrent clients, each a Client
// made from the log's public key alone, so every answer's checkpoint
// signature, consistency and inclusion proof are verified with nothing
// else; every acknowledged (digest, index) answers the same from Get. Then
// the whole log is verified as `stepseal log verify` does (tlog.Client
// Audit, every inclusion), from the files and over HTTP, and — when
// TESSERA_FSCK names Tessera's fsck (go install
// github.com/transparency-dev/tessera/cmd/fsck@v1.0.4) — Tessera's own fsck
// recomputes the tree over file:// and over HTTP.
func TestVolumeTesseraFsck(t *testing.T) {
	docs := 640
	if s := os.Getenv("STEPSEAL_VOLUME_DOCS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("STEPSEAL_VOLUME_DOCS=%q", s)
		}
		docs = n
	} else if testing.Short() {
		docs = 128
	}
	const clients = 64
	keys := t.TempDir()
	pub := filepath.Join(keys, "log.pub")
	key, err := tlog.WriteKeyFiles(filepath.Join(keys, "log.key"), pub, "log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	v, err := tlog.ReadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), key: key, signer: signingtest.SignerOf(t, signing.ED25519)}
	f.start(t, nil)
	var mu sync.Mutex
	acked := make(map[string]uint64, docs)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := NewClient(f.http.URL, v, &http.Client{Timeout: time.Minute})
			if err != nil {
				t.Error(err)
				return
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= docs {
					return
				}
				got, err := c.Add(ctx, provenance(t, f.signer, fmt.Sprintf("run-%d", i%50), docName(i), "shared-base"))
				if err != nil {
					t.Errorf("add %d: %v", i, err)
					return
				}
				mu.Lock()
				acked[got.Entry.Digest] = got.Index
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	elapsed := time.Since(start)
	t.Logf("%d documents from %d clients in %v (%.0f/s), every answer verified with the public key", docs, clients, elapsed.Round(time.Millisecond), float64(docs)/elapsed.Seconds())
	if len(acked) != docs {
		t.Fatalf("%d distinct digests acknowledged for %d documents", len(acked), docs)
	}
	seen := map[uint64]string{}
	c, _ := NewClient(f.http.URL, v, nil)
	for d, i := range acked {
		if o, dup := seen[i]; dup {
			t.Fatalf("log entry %d acknowledged for %s and %s", i, o, d)
		}
		seen[i] = d
		g, err := c.Get(ctx, d)
		if err != nil || g.Index != i {
			t.Fatalf("get %s: %d %v, want %d", d, g.Index, err, i)
		}
	}
	// `stepseal log verify --log DIR` and `--server URL`.
	for name, lc := range map[string]*tlog.Client{"files": tlog.NewClient(filepath.Join(f.dir, "log"), v), "HTTP": c.Log()} {
		cp, err := lc.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := lc.Audit(ctx, cp, 0, func(_ uint64, leaf []byte) error {
			n++
			return nil
		}); err != nil || cp.Size != uint64(docs) || n != docs {
			t.Fatalf("verify over %s: %d of %d entries, %v", name, n, cp.Size, err)
		}
	}
	if _, err := Audit(ctx, c, filepath.Join(t.TempDir(), "audit.db"), []Query{{Subject: subject("shared-base")}, {RunID: "run-7"}}); err != nil {
		t.Fatal(err)
	}

	cp, err := c.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fsck := os.Getenv("TESSERA_FSCK")
	if fsck == "" {
		t.Log("TESSERA_FSCK not set: Tessera's fsck not run")
		return
	}
	for _, u := range []string{"file://" + filepath.Join(f.dir, "log") + "/", f.http.URL + "/"} {
		out, err := exec.Command(fsck, "--storage_url="+u, "--origin="+f.key.Verifier.Name(), "--public_key="+pub, "--ui=false").CombinedOutput()
		if err != nil {
			t.Fatalf("fsck %s: %v\n%s", u, err, out)
		}
		// fsck's recomputed root is the checkpoint's.
		if want := fmt.Sprintf("size %d and root %s", cp.Size, base64.StdEncoding.EncodeToString(cp.Hash)); !strings.Contains(string(out), want) {
			t.Fatalf("fsck %s does not report %q:\n%s", u, want, out)
		}
		t.Logf("fsck %s:\n%s", u, out)
	}
}

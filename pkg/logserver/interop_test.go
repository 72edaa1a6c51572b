package logserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestTesseraFsck: Tessera's own fsck reads the served log over HTTP and
// recomputes its tree. It needs the fsck binary (TESSERA_FSCK; hack/bench/log.sh
// builds it from the Tessera version in go.mod).
func TestTesseraFsck(t *testing.T) {
	fsck := os.Getenv("TESSERA_FSCK")
	if fsck == "" {
		t.Skip("TESSERA_FSCK not set")
	}
	keys := t.TempDir()
	pub := filepath.Join(keys, "log.pub")
	key, err := tlog.WriteKeyFiles(filepath.Join(keys, "log.key"), pub, "log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), key: key, signer: signingtest.SignerOf(t, signing.ED25519)}
	f.start(t, nil)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 300; i += 16 {
				if _, err := f.client.Add(ctx, provenance(t, f.signer, "run", docName(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	out, err := exec.Command(fsck, "--storage_url="+f.http.URL+"/", "--origin="+f.key.Verifier.Name(), "--public_key="+pub, "--ui=false").CombinedOutput()
	if err != nil {
		t.Fatalf("fsck: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

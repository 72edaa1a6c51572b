package backends

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/internal/witnesstest"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// TestServedWitnessPolicy: the logserver backend with
// storage.logserver.witness-policy accepts the served log's checkpoints
// when a real witness cosigned them, and refuses them (ErrNotWitnessed)
// under a policy naming a witness the log does not use.
func TestServedWitnessPolicy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key, err := tlog.WriteKeyFiles(filepath.Join(dir, "log.key"), filepath.Join(dir, "log.pub"), "backend.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := os.ReadFile(filepath.Join(dir, "log.pub"))
	w := witnesstest.Start(t, "witness.stepseal.test", string(vkey))
	policy := filepath.Join(dir, "policy")
	if err := os.WriteFile(policy, []byte(w.Policy()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := witness.ReadPolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := logserver.Open(ctx, filepath.Join(dir, "served"), key, logserver.Options{
		Keys: logserver.Keys{signingtest.Verifier(t, signingtest.SignerOf(t, signing.ED25519))}, Witnesses: p})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() {
		hs.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.Close(cctx)
	}()

	var o Stores
	rs, err := o.Served(hs.URL, filepath.Join(dir, "log.pub"), policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.LogCheckpoint(ctx); err != nil {
		t.Fatalf("cosigned checkpoint refused: %v", err)
	}
	_, other, err := note.GenerateKey(rand.Reader, "other.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	otherPolicy := filepath.Join(dir, "other-policy")
	if err := os.WriteFile(otherPolicy, []byte("witness o "+other+" http://127.0.0.1:1/\nquorum o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err = o.Served(hs.URL, filepath.Join(dir, "log.pub"), otherPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.LogCheckpoint(ctx); !errors.Is(err, witness.ErrNotWitnessed) {
		t.Fatalf("checkpoint without the policy's witness: %v, want witness.ErrNotWitnessed", err)
	}
}

package backends

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/pgstore/pgtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// The postgres backend on a served log opens once per DSN file, URL and
// content of its files, appends the document to the served log (a log
// index from it), opens anew when the log's key file changes, and refuses
// a checkpoint of another key (tlog.ErrBadCheckpoint) once it does.
func TestPostgresServedBackend(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	ctx := context.Background()
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(srv.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := tlog.WriteKeyFiles(filepath.Join(dir, "log.key"), filepath.Join(dir, "log.pub"), "backend.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	signer := signingtest.SignerOf(t, signing.ED25519)
	ls, err := logserver.Open(ctx, filepath.Join(dir, "served"), key, logserver.Options{Keys: logserver.Keys{signingtest.Verifier(t, signer)}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ls.Handler())
	defer func() {
		hs.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ls.Close(cctx)
	}()
	var o Stores
	defer o.Close(ctx)
	pub := filepath.Join(dir, "log.pub")
	s, err := o.PostgresServed(ctx, dsnFile, hs.URL, pub, "")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := o.PostgresServed(ctx, dsnFile, hs.URL, pub, ""); err != nil || again != s {
		t.Fatalf("second open: %p, %v; want the same store %p", again, err, s)
	}
	mb, err := attest.SignLink(ctx, in_toto.Link{Type: "link", Name: "build", Materials: map[string]in_toto.HashObj{}, Products: map[string]in_toto.HashObj{},
		ByProducts: map[string]interface{}{}, Command: []string{}, Environment: map[string]interface{}{attest.EnvRunID: "run-1"}}, signer)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(mb)
	keyID, _ := signer.KeyID()
	d, i, err := s.PutIndexed(ctx, store.Entry{Kind: store.KindLink, Name: seal.LinkName("build", keyID), RunID: "run-1", Data: data})
	if err != nil || i != 0 {
		t.Fatalf("PutIndexed = %s, %d, %v", d, i, err)
	}
	if v, err := logserver.NewClient(hs.URL, key.Verifier, nil); err != nil {
		t.Fatal(err)
	} else if got, err := v.Get(ctx, d); err != nil || got.Index != 0 {
		t.Fatalf("the served log's entry of %s: %+v, %v", d, got.Index, err)
	}

	// Another key in the file: a new store, which refuses the log's checkpoints.
	_, otherPub, err := note.GenerateKey(nil, "backend.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, []byte(otherPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rotated, err := o.PostgresServed(ctx, dsnFile, hs.URL, pub, "")
	if err != nil || rotated == s {
		t.Fatalf("after the key file changed: %p, %v; want a new store", rotated, err)
	}
	if _, err := rotated.Fetch(ctx, d); !errors.Is(err, tlog.ErrBadCheckpoint) {
		t.Fatalf("Fetch with another log key: %v, want tlog.ErrBadCheckpoint", err)
	}
	if _, err := o.PostgresServed(ctx, dsnFile, hs.URL, filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "log key") {
		t.Fatalf("missing key file: %v", err)
	}
}

package repo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	// sigstore's in-process KMS provider (fakekms://); a real deployment
	// links the provider of its KMS.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/stepseal/stepseal/pkg/signing"
)

// TestOnlineKeyInKMS: snapshot and timestamp signed by a KMS key through
// the signing.Signer → sigstore signature.Signer adapter; go-tuf's updater
// verifies them.
func TestOnlineKeyInKMS(t *testing.T) {
	ctx := context.Background()
	online, err := signing.KMSSigner(ctx, "fakekms://tuf-online")
	if err != nil {
		t.Fatal(err)
	}
	dir, pub := t.TempDir(), t.TempDir()
	r, err := Init(ctx, dir, InitOptions{RootSigners: []signing.Signer{newKey(t, signing.RSA)}, TargetsSigners: []signing.Signer{newKey(t, signing.ED25519)}, Online: online})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(ctx, pub); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Serve(sctx, l, pub) }()
	defer func() { cancel(); <-done }()
	root1, _ := os.ReadFile(filepath.Join(pub, MetadataDir, "1.root.json"))
	u := newUpdater(t, "http://"+l.Addr().String()+"/"+MetadataDir, root1, t.TempDir())
	if err := u.Refresh(); err != nil {
		t.Fatal(err)
	}
	if v := u.GetTrustedMetadataSet().Timestamp.Signed.Version; v != 2 {
		t.Fatalf("timestamp v%d, want 2", v)
	}
}

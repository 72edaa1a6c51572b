package signing_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/stepseal/stepseal/pkg/signing"
)

// sigstore's fakekms:// provider signs in process with the key in the
// context: what a KMS signer returns must verify as the in-toto scheme.
func TestKMSSigner(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(t.Context(), fake.KmsCtxKey{}, key)
	s, err := signing.KMSSigner(ctx, "fakekms://team-a")
	if err != nil {
		t.Fatal(err)
	}
	want, err := signing.KeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.KeyID(); got != want {
		t.Fatalf("key ID %s, want the KMS key's %s", got, want)
	}
	msg := []byte("in-toto link")
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(ctx, msg, sig); err != nil {
		t.Fatalf("KMS signature does not verify: %v", err)
	}
}

func TestKMSSignerUnknownProvider(t *testing.T) {
	_, err := signing.KMSSigner(t.Context(), "nosuchkms://key")
	if !errors.Is(err, signing.ErrKey) {
		t.Fatalf("err = %v, want ErrKey", err)
	}
}

func TestIsKMSURI(t *testing.T) {
	for s, want := range map[string]bool{
		"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k": true,
		"awskms:///alias/stepseal":                                true,
		"hashivault://stepseal":                                   true,
		"cosign.key":                                              false,
		"/etc/keys/cosign.key":                                    false,
		"://x":                                                    false,
		"gcpkms://":                                               false,
	} {
		if got := signing.IsKMSURI(s); got != want {
			t.Errorf("IsKMSURI(%q) = %v, want %v", s, got, want)
		}
	}
}

package signing_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/signing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
)

var ctx = context.Background()

func TestKeyTypesInteroperateWithInTotoGolang(t *testing.T) {
	for _, kt := range []signing.KeyType{signing.ED25519, signing.ECDSA, signing.RSA} {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			key, err := signing.Generate(kt)
			if err != nil {
				t.Fatal(err)
			}
			privPath, pubPath, err := signing.WriteKeyPair(dir, "k", key, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(privPath)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("private key mode = %v, %v; want 0600", st.Mode().Perm(), err)
			}
			s, err := signing.LoadSigner(privPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Key IDs are what in-toto-golang computes from the same files.
			var itPub, itPriv in_toto.Key
			if err := itPub.LoadKeyDefaults(pubPath); err != nil {
				t.Fatal(err)
			}
			if err := itPriv.LoadKeyDefaults(privPath); err != nil {
				t.Fatal(err)
			}
			id, _ := s.KeyID()
			if id != itPub.KeyID || id != itPriv.KeyID {
				t.Fatalf("key id %s, in-toto-golang says %s (pub) / %s (priv)", id, itPub.KeyID, itPriv.KeyID)
			}
			// A Metablock we sign verifies with in-toto-golang, and vice versa.
			mb := in_toto.Metablock{Signed: in_toto.Link{Type: "link", Name: "a.b", Materials: map[string]in_toto.HashObj{}, Products: map[string]in_toto.HashObj{}, Command: []string{}, ByProducts: map[string]interface{}{}, Environment: map[string]interface{}{}}}
			if err := signing.SignMetablock(ctx, &mb, s); err != nil {
				t.Fatal(err)
			}
			if err := mb.VerifySignature(itPub); err != nil {
				t.Fatalf("in-toto-golang rejects our signature: %v", err)
			}
			theirs := in_toto.Metablock{Signed: mb.Signed}
			if err := theirs.Sign(itPriv); err != nil {
				t.Fatal(err)
			}
			v, err := signing.LoadVerifier(pubPath)
			if err != nil {
				t.Fatal(err)
			}
			payload, _ := theirs.GetSignableRepresentation()
			if err := v.Verify(ctx, payload, hexDecode(t, theirs.Signatures[0].Sig)); err != nil {
				t.Fatalf("we reject in-toto-golang's signature: %v", err)
			}
			if err := v.Verify(ctx, append(payload, ' '), hexDecode(t, theirs.Signatures[0].Sig)); !errors.Is(err, signing.ErrSignature) {
				t.Fatalf("modified payload: %v, want ErrSignature", err)
			}
			// The layout key form round-trips to a verifier with the same id.
			ik, err := signing.InTotoKey(s.Public())
			if err != nil {
				t.Fatal(err)
			}
			v2, err := signing.VerifierFromInTotoKey(ik)
			if err != nil {
				t.Fatal(err)
			}
			if id2, _ := v2.KeyID(); id2 != id {
				t.Fatalf("VerifierFromInTotoKey id %s, want %s", id2, id)
			}
			ik.KeyID = strings.Repeat("0", 64)
			if _, err := signing.VerifierFromInTotoKey(ik); !errors.Is(err, signing.ErrKey) {
				t.Fatalf("key with a lying key id: %v, want ErrKey", err)
			}
		})
	}
}

func TestEncryptedCosignKey(t *testing.T) {
	dir := t.TempDir()
	key, _ := signing.Generate(signing.ECDSA)
	privPath, _, err := signing.WriteKeyPair(dir, "cosign", key, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(privPath)
	if !strings.Contains(string(data), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Fatalf("not a cosign key file:\n%s", data)
	}
	if _, err := signing.LoadSigner(privPath, signing.StaticPass("s3cret")); err != nil {
		t.Fatal(err)
	}
	_, err = signing.LoadSigner(privPath, signing.StaticPass("wrong"))
	if !errors.Is(err, signing.ErrPassword) {
		t.Fatalf("wrong password: %v, want ErrPassword", err)
	}
	if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if _, err := signing.LoadSigner(privPath, nil); !errors.Is(err, signing.ErrPassword) {
		t.Fatalf("no password source: %v, want ErrPassword", err)
	}
}

func TestWriteKeyPairRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	key, _ := signing.Generate(signing.ED25519)
	if _, _, err := signing.WriteKeyPair(dir, "k", key, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "k.key"))
	if _, _, err := signing.WriteKeyPair(dir, "k", key, nil); err == nil {
		t.Fatal("overwrote an existing key")
	}
	after, _ := os.ReadFile(filepath.Join(dir, "k.key"))
	if string(before) != string(after) {
		t.Fatal("key file changed")
	}
}

func TestBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"empty":        "",
		"garbage":      "not a key",
		"bad pem body": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"certificate":  "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
	}
	for name, content := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := signing.LoadSigner(p, nil); !errors.Is(err, signing.ErrKey) {
			t.Errorf("LoadSigner(%s): %v, want ErrKey", name, err)
		}
		if _, err := signing.LoadVerifier(p); !errors.Is(err, signing.ErrKey) {
			t.Errorf("LoadVerifier(%s): %v, want ErrKey", name, err)
		}
	}
	if _, err := signing.LoadSigner(filepath.Join(dir, "missing"), nil); !errors.Is(err, signing.ErrKey) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 2<<20), 0o600)
	if _, err := signing.LoadSigner(big, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge key file: %v", err)
	}
}

func TestEnvelopeThreshold(t *testing.T) {
	var signers []signing.Signer
	var verifiers []signing.Verifier
	for i := 0; i < 3; i++ {
		k, _ := signing.Generate(signing.ED25519)
		s, _ := signing.NewSigner(k)
		v, _ := signing.NewVerifier(k.Public())
		signers = append(signers, s)
		verifiers = append(verifiers, v)
	}
	env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, []byte(`{"a":1}`), signers[0], signers[1])
	if err != nil {
		t.Fatal(err)
	}
	ids, err := signing.VerifyEnvelope(ctx, env, 2, verifiers...)
	if err != nil || len(ids) != 2 {
		t.Fatalf("threshold 2 of 2 signers: %v, %v", ids, err)
	}
	if _, err := signing.VerifyEnvelope(ctx, env, 3, verifiers...); !errors.Is(err, signing.ErrSignature) {
		t.Fatalf("threshold 3 with 2 signatures: %v, want ErrSignature", err)
	}
	env.Payload = env.Payload[:len(env.Payload)-2] + "fQ"
	_, err = signing.VerifyEnvelope(ctx, env, 1, verifiers...)
	if !errors.Is(err, signing.ErrSignature) {
		t.Fatalf("tampered payload: %v, want ErrSignature", err)
	}
	rejecttest.Is(t, "tampered payload", err, reject.ErrSignature)
}

package crypt

import (
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/containers/ocicrypt/blockcipher"
	jose "github.com/go-jose/go-jose/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stepseal/stepseal/pkg/policy"
)

// twoPlatforms: "a" (EC P-256) and "b" (RSA 2048); ref's rule names both,
// "*/only-a/**" names a alone.
func twoPlatforms(t testing.TB) (*policy.Policy, crypto.Signer, crypto.Signer) {
	a, b := testKey(t, p256, "a"), testKey(t, rsa2048, "b")
	pol := newPolicy(t, 1, []platformSpec{{name: "a", key: a}, {name: "b", key: b}},
		[]string{"*/only-a/**", "a"}, []string{"*/demo/**", "a", "b"})
	return pol, a, b
}

func jwkFor(t *testing.T, pub crypto.PublicKey, kid string) []byte {
	t.Helper()
	alg, err := policy.KeyAlgorithm(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(alg)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fp(t *testing.T, pub crypto.PublicKey) string {
	f, err := policy.Fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAttackUnauthorizedPlatformCannotDecrypt(t *testing.T) {
	pol, a, b := twoPlatforms(t)
	enc, err := EncryptFor(ctx, pol, "h.test/only-a/app:1", ociImage(t, 10_000, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Manifest(); err != nil {
		t.Fatal(err)
	}
	_, err = Decrypt(ctx, enc, b)
	if !errors.Is(err, ErrNotRecipient) || !strings.Contains(err.Error(), "key "+fp(t, b.Public())+" opens none of the 1 recipient entries") {
		t.Fatalf("decrypt by platform b: %v", err)
	}
	if _, err := Decrypt(ctx, enc, a); err != nil {
		t.Fatalf("decrypt by platform a: %v", err)
	}
}

func TestAttackNoRule(t *testing.T) {
	pol, _, _ := twoPlatforms(t)
	_, err := EncryptFor(ctx, pol, "other.test/x/y:1", ociImage(t, 100, 1))
	if !errors.Is(err, policy.ErrNoRule) || !strings.Contains(err.Error(), "other.test/x/y:1") {
		t.Fatalf("EncryptFor outside every rule: %v", err)
	}
	if err := CheckRecipients(ociImage(t, 100, 1), pol, "other.test/x/y:1"); !errors.Is(err, policy.ErrNoRule) {
		t.Fatalf("CheckRecipients outside every rule: %v", err)
	}
}

func TestAttackExtraRecipient(t *testing.T) {
	pol, a, b := twoPlatforms(t)
	mallory := testKey(t, p256, "mallory")
	img := ociImage(t, 10_000, 2)
	for _, tc := range []struct {
		name string
		jwks [][]byte
		want string
	}{
		{"extra platform", [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, b.Public(), fp(t, b.Public())), jwkFor(t, mallory.Public(), fp(t, mallory.Public()))},
			"extra: recipient " + fp(t, mallory.Public()) + " ECDH-ES+A256KW EC-P-256 is no platform of the rule"},
		{"unidentified extra", [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, b.Public(), fp(t, b.Public())), jwkFor(t, mallory.Public(), "")},
			"extra: unidentified recipient (unidentified ECDH-ES+A256KW EC-P-256)"},
		{"duplicate label", [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, b.Public(), fp(t, b.Public())), jwkFor(t, mallory.Public(), fp(t, a.Public()))},
			`extra: second recipient labeled platform "a"`},
		{"relabeled, other key type", [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, mallory.Public(), fp(t, b.Public()))},
			`extra: recipient labeled platform "b" is ECDH-ES+A256KW EC-P-256 but that platform's key is RSA-2048: relabeled recipient; missing: b (`},
		{"platform dropped", [][]byte{jwkFor(t, a.Public(), fp(t, a.Public()))},
			"missing: b (" + fp(t, b.Public()) + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := encryptImage(ctx, img, tc.jwks)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckRecipients(enc, pol, ref)
			var re *RecipientsError
			if !errors.Is(err, ErrRecipients) || !errors.As(err, &re) || re.Layer != 0 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckRecipients = %v, want ErrRecipients containing %q", err, tc.want)
			}
		})
	}
}

// A recipient relabeled with a same-shaped key passes the public check (the
// kid is only a claim); the platform whose label was taken detects it when
// it decrypts, and so does our Decrypt with the impostor's key.
func TestAttackRelabeledSameShape(t *testing.T) {
	pol, a, b := twoPlatforms(t)
	mallory := testKey(t, rsa2048, "mallory")
	enc, err := encryptImage(ctx, ociImage(t, 10_000, 1), [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, mallory.Public(), fp(t, b.Public()))})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRecipients(enc, pol, ref); err != nil {
		t.Fatalf("same-shape relabel is not visible without keys, got %v", err)
	}
	_, err = Decrypt(ctx, enc, b)
	if !errors.Is(err, ErrRecipients) || !strings.Contains(err.Error(), "labeled with this key ("+fp(t, b.Public())+") but does not open with it") {
		t.Fatalf("platform b: %v", err)
	}
	_, err = Decrypt(ctx, enc, mallory)
	if !errors.Is(err, ErrRecipients) || !strings.Contains(err.Error(), "labeled "+fp(t, b.Public())+" opens with key "+fp(t, mallory.Public())) {
		t.Fatalf("mallory: %v", err)
	}
}

type tamperedImage struct {
	v1.Image
	flip int64
}

type tamperedLayer struct {
	v1.Layer
	flip int64
}

func (t tamperedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := t.Image.LayerByDigest(h)
	return tamperedLayer{l, t.flip}, err
}

func (t tamperedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := t.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	b[t.flip] ^= 0x01
	return io.NopCloser(strings.NewReader(string(b))), nil
}

func TestAttackTamperedCiphertext(t *testing.T) {
	pol, a, _ := twoPlatforms(t)
	enc, err := EncryptFor(ctx, pol, ref, ociImage(t, 3<<20, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Manifest(); err != nil {
		t.Fatal(err)
	}
	for _, flip := range []int64{0, 2 << 20, 3<<20 - 1} {
		dec, err := Decrypt(ctx, tamperedImage{enc, flip}, a)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := dec.Layers()
		_, err = readAll(t, ls[0])
		if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), "HMAC-SHA256) failed") {
			t.Fatalf("flip at %d: %v", flip, err)
		}
	}
}

func TestRotateRevokesRemovedPlatform(t *testing.T) {
	pol1, a, b := twoPlatforms(t)
	// Version 2: b is removed from the rule.
	pol2 := newPolicy(t, 2, []platformSpec{{name: "a", key: a}, {name: "b", key: b}}, []string{"*/demo/**", "a"})
	img := ociImage(t, 200_000, 2)
	old, err := EncryptFor(ctx, pol1, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	oldLayers := layerBytes(t, old) // forces the first pass
	rotated, err := Rotate(ctx, pol2, ref, old, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRecipients(rotated, pol2, ref); err != nil {
		t.Fatal(err)
	}
	if err := CheckRecipients(old, pol2, ref); !errors.Is(err, ErrRecipients) || !strings.Contains(err.Error(), "is no platform of the rule") {
		t.Fatalf("old image against the new policy: %v", err)
	}
	newLayers := layerBytes(t, rotated)
	if _, err := Decrypt(ctx, rotated, b); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("removed platform decrypts the rotated image: %v", err)
	}
	dec, err := Decrypt(ctx, rotated, a)
	if err != nil {
		t.Fatal(err)
	}
	if !equalLayers(layerBytes(t, dec), layerBytes(t, img)) {
		t.Fatal("rotated image does not decrypt to the plaintext")
	}
	// b kept the old content keys: they must not open the new layers.
	om, _ := old.Manifest()
	nm, _ := rotated.Manifest()
	for i := range om.Layers {
		oldOpts, err := unwrap(om.Layers[i], b, fp(t, b.Public()))
		if err != nil {
			t.Fatal(err)
		}
		newOpts, err := unwrap(nm.Layers[i], a, fp(t, a.Public()))
		if err != nil {
			t.Fatal(err)
		}
		if string(oldOpts.Private.SymmetricKey) == string(newOpts.Private.SymmetricKey) {
			t.Fatal("content key reused")
		}
		// The old key decrypts the old ciphertext...
		if _, err := openWith(oldOpts, oldLayers[i]); err != nil {
			t.Fatalf("old key on old layer: %v", err)
		}
		// ...but not the new one, even with the new layer's public
		// options (HMAC) and the old nonce, or the new nonce.
		attempt := oldOpts
		attempt.Public = newOpts.Public
		if _, err := openWith(attempt, newLayers[i]); err == nil {
			t.Fatal("old content key authenticates the rotated layer")
		}
		attempt.Private.CipherOptions = newOpts.Private.CipherOptions
		if _, err := openWith(attempt, newLayers[i]); err == nil {
			t.Fatal("old content key with the new nonce authenticates the rotated layer")
		}
	}
	if _, err := Rotate(ctx, pol2, "other.test/x:1", old, a); !errors.Is(err, policy.ErrNoRule) {
		t.Fatalf("rotate outside the policy: %v", err)
	}
}

// openWith decrypts ciphertext with given layer options using ocicrypt's
// block cipher (as someone holding a content key would).
func openWith(opts blockcipher.LayerBlockCipherOptions, ciphertext []byte) ([]byte, error) {
	bc, err := blockcipher.NewAESCTRLayerBlockCipher(256)
	if err != nil {
		return nil, err
	}
	r, _, err := bc.Decrypt(strings.NewReader(string(ciphertext)), opts)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

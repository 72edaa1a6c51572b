package crypt

import (
	"errors"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Every refusal of crypt, mounted for real, is its sentinel, the reason of
// stepseal's shared vocabulary that sentinel documents, and a refusal —
// never "could not check".
func TestRefusalsMatchReasons(t *testing.T) {
	pol, a, b := twoPlatforms(t)
	mallory := testKey(t, p256, "mallory")
	img := ociImage(t, 10_000, 1)
	onlyA, err := EncryptFor(ctx, pol, "h.test/only-a/app:1", img)
	if err != nil {
		t.Fatal(err)
	}
	both, err := EncryptFor(ctx, pol, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	m, err := both.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	// withAnnotation is the first layer's descriptor with one annotation
	// replaced, unwrapped by platform a.
	withAnnotation := func(k, v string) error {
		d := m.Layers[0]
		d.Annotations = map[string]string{}
		for key, val := range m.Layers[0].Annotations {
			d.Annotations[key] = val
		}
		d.Annotations[k] = v
		_, err := unwrap(d, a, fp(t, a.Public()))
		return err
	}
	extra, err := encryptImage(ctx, img, [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, b.Public(), fp(t, b.Public())), jwkFor(t, mallory.Public(), "")})
	if err != nil {
		t.Fatal(err)
	}
	relabeled, err := encryptImage(ctx, img, [][]byte{jwkFor(t, a.Public(), fp(t, a.Public())), jwkFor(t, mallory.Public(), fp(t, b.Public()))})
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		err    func() error
		want   error
		reason *reject.Reason
	}{
		{"decrypt with a key that is no recipient", func() error {
			_, err := Decrypt(ctx, onlyA, b)
			return err
		}, ErrNotRecipient, reject.ErrUnauthorized},
		{"an unidentified extra recipient", func() error { return CheckRecipients(extra, pol, ref) }, ErrRecipients, reject.ErrPolicy},
		{"a relabeled recipient, found by the platform it impersonates", func() error {
			_, err := Decrypt(ctx, relabeled, b)
			return err
		}, ErrRecipients, reject.ErrPolicy},
		{"plaintext where the policy requires encryption", func() error { return CheckRecipients(img, pol, ref) }, ErrNotEncrypted, reject.ErrPolicy},
		{"tampered ciphertext", func() error {
			dec, err := Decrypt(ctx, tamperedImage{both, 100}, a)
			if err != nil {
				return err
			}
			ls, err := dec.Layers()
			if err != nil {
				return err
			}
			_, err = readAll(t, ls[0])
			return err
		}, ErrDigest, reject.ErrMismatch},
		{"encrypting an encrypted image", func() error {
			enc, err := EncryptFor(ctx, pol, ref, both)
			if err == nil {
				_, err = enc.Manifest()
			}
			return err
		}, ErrUnsupported, reject.ErrUnsupported},
		{"recipient entries that are not JWE", func() error { return withAnnotation(annotationJWE, "bm90IEpXRQ==") }, ErrMalformed, reject.ErrMalformed},
		{"layer options that are not base64", func() error { return withAnnotation(annotationPubOpt, "%%%") }, ErrMalformed, reject.ErrMalformed},
		{"a private key that is neither PEM nor JWK", func() error {
			_, err := ParsePrivateKey([]byte("not a key"), nil)
			return err
		}, ErrMalformed, reject.ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.err()
			if !errors.Is(err, c.want) || !errors.Is(err, c.reason) || reject.Of(err) != c.reason {
				t.Fatalf("%v: want %v, reason %v (got reason %v)", err, c.want, c.reason, reject.Of(err))
			}
			if !errors.Is(err, reject.ErrRefused) || errors.Is(err, reject.ErrUnableToCheck) {
				t.Errorf("%v: refused %v, unable to check %v; want a refusal", err, errors.Is(err, reject.ErrRefused), errors.Is(err, reject.ErrUnableToCheck))
			}
		})
	}
}

// ErrMalformed was ErrUnsupported before it had its own name: callers that
// branch on ErrUnsupported still see it, but its reason is malformed only.
func TestMalformedIsStillUnsupported(t *testing.T) {
	_, err := ParsePrivateKey([]byte("{not a JWK"), nil)
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrUnsupported) || errors.Is(err, reject.ErrUnsupported) {
		t.Fatalf("%v: ErrMalformed %v, ErrUnsupported %v, reject.ErrUnsupported %v", err,
			errors.Is(err, ErrMalformed), errors.Is(err, ErrUnsupported), errors.Is(err, reject.ErrUnsupported))
	}
	if re := (&RecipientsError{}); !errors.Is(re, ErrRecipients) || reject.Of(re) != reject.ErrPolicy {
		t.Fatalf("a RecipientsError is ErrRecipients %v, reason %v; want reject.ErrPolicy", errors.Is(re, ErrRecipients), reject.Of(re))
	}
}

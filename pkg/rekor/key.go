package rekor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"

	"github.com/stepseal/stepseal/pkg/signing"
)

// KeyAlgorithm returns how Rekor v2 logs signatures of pub as stepseal
// makes them (pkg/signing): its Sigstore key details and the hash of the
// signed data. ECDSA P-256/384/521 (SHA-256/384/512) fits. Pure Ed25519
// signs the message itself, not a digest, and Rekor v2's hashedrekord
// holds only a digest (rekor-tiles checks Ed25519ph; sigstore-go requires
// a prehash algorithm); stepseal's RSA signatures are RSASSA-PSS, which
// Rekor v2 does not accept (PKCS#1 v1.5 only). Those are ErrKeyNotLoggable,
// naming the key.
func KeyAlgorithm(pub crypto.PublicKey) (protocommon.PublicKeyDetails, crypto.Hash, error) {
	id := keyName(pub)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256, crypto.SHA256, nil
		case 384:
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384, crypto.SHA384, nil
		case 521:
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P521_SHA_512, crypto.SHA512, nil
		}
		return 0, 0, fmt.Errorf("%w: key %s: ECDSA curve %s", ErrKeyNotLoggable, id, k.Curve.Params().Name)
	case ed25519.PublicKey:
		return 0, 0, fmt.Errorf("%w: key %s is Ed25519: its signatures are over the message, and Rekor v2 logs a digest (prehash algorithms only); sign with an ECDSA key", ErrKeyNotLoggable, id)
	case *rsa.PublicKey:
		return 0, 0, fmt.Errorf("%w: key %s is RSA: stepseal signs RSASSA-PSS, and Rekor v2 accepts RSA PKCS#1 v1.5 only; sign with an ECDSA key", ErrKeyNotLoggable, id)
	}
	return 0, 0, fmt.Errorf("%w: key %s of type %T", ErrKeyNotLoggable, id, pub)
}

// keyName is the in-toto key ID of pub (short), for messages.
func keyName(pub crypto.PublicKey) string {
	id, err := signing.KeyID(pub)
	if err != nil {
		return fmt.Sprintf("(%T)", pub)
	}
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// KeyHint is the public-key hint a bundle carries: the base64 of the
// SHA-256 of the key's PKIX DER, as cosign writes it.
func KeyHint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

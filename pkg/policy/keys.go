package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// MinRSABits is the smallest RSA modulus a platform key may have.
const MinRSABits = 2048

const maxRSABits = 16384

// maxKeyFile caps a key file referenced by a plain policy.
const maxKeyFile = 64 << 10

// Fingerprint identifies a public key: "sha256:" and the hex SHA-256 of its
// PKIX (SubjectPublicKeyInfo) DER encoding, the same value as
// `openssl pkey -pubin -outform DER | sha256sum`.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ParsePublicKey parses a platform public key: a PEM "PUBLIC KEY" (PKIX) or
// "RSA PUBLIC KEY" (PKCS#1) block, or a public JWK. Only RSA keys of at least
// MinRSABits and EC keys on P-256, P-384 or P-521 are accepted: those are the
// keys JWE (RSA-OAEP-256, ECDH-ES+A256KW) can encrypt to. Private keys are
// refused without echoing them.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		return parseJWK(data)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("neither a PEM block nor a JWK")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM block")
	}
	var pub crypto.PublicKey
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY":
		return nil, fmt.Errorf("PEM block %q is a private key, a policy holds public keys only", block.Type)
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("PEM %s: %w", block.Type, err)
	}
	return pub, checkKey(pub)
}

func parseJWK(data []byte) (crypto.PublicKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("JWK: %w", err)
	}
	if !k.IsPublic() {
		return nil, errors.New("JWK is a private key, a policy holds public keys only")
	}
	if k.Use != "" && k.Use != "enc" {
		return nil, fmt.Errorf("JWK \"use\" is %q, a platform key must be usable for encryption (\"enc\")", k.Use)
	}
	return k.Key, checkKey(k.Key)
}

func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if b := k.N.BitLen(); b < MinRSABits || b > maxRSABits {
			return fmt.Errorf("RSA key of %d bits, need %d to %d", b, MinRSABits, maxRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("EC curve %s is not supported (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	}
	return fmt.Errorf("unsupported key type %T (want RSA or EC)", pub)
}

// KeyAlgorithm is the JWE key management algorithm stepseal encrypts to pub
// with: RSA-OAEP-256 for RSA, ECDH-ES+A256KW for EC.
func KeyAlgorithm(pub crypto.PublicKey) (jose.KeyAlgorithm, error) {
	switch pub.(type) {
	case *rsa.PublicKey:
		return jose.RSA_OAEP_256, nil
	case *ecdsa.PublicKey:
		return jose.ECDH_ES_A256KW, nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// KeyShape describes what a JWE recipient entry reveals about its key without
// the private key: "RSA-2048" (from the wrapped key's length) or "EC-P-256"
// (from the ephemeral key's curve).
func KeyShape(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", (k.N.BitLen()+7)/8*8)
	case *ecdsa.PublicKey:
		return "EC-" + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}

func marshalPEM(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Errors callers branch on with errors.Is.
var (
	// ErrSignature: a signature did not verify (reject.ErrSignature).
	ErrSignature = reject.Sentinel(reject.ErrSignature, "signature verification failed")
	// ErrKey: a key file or key is unusable (unsupported type, malformed, wrong password).
	ErrKey = errors.New("invalid key")
	// ErrPassword: an encrypted key could not be decrypted with the password given.
	ErrPassword = errors.New("wrong password for encrypted key")
)

// Signer signs data in the in-toto signature scheme of its key. It satisfies
// dsse.Signer, so DSSE envelopes and in-toto Metablocks share one signer.
type Signer interface {
	Sign(ctx context.Context, data []byte) ([]byte, error)
	KeyID() (string, error)
	Public() crypto.PublicKey
}

// Verifier checks signatures made by a Signer. It satisfies dsse.Verifier.
type Verifier interface {
	Verify(ctx context.Context, data, sig []byte) error
	KeyID() (string, error)
	Public() crypto.PublicKey
}

// KeyType names the supported key algorithms.
type KeyType string

// Supported key types.
const (
	ED25519 KeyType = "ed25519"
	ECDSA   KeyType = "ecdsa"
	RSA     KeyType = "rsa"
)

// Generate makes a new private key of the given type (ECDSA is P-256, RSA is 3072 bits).
func Generate(t KeyType) (crypto.Signer, error) {
	switch t {
	case ED25519, "":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case ECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("%w: unsupported key type %q (want ed25519, ecdsa or rsa)", ErrKey, t)
}

type signer struct {
	key   crypto.Signer
	keyID string
}

// NewSigner wraps a crypto.Signer (a parsed private key, or a KMS signer) as an
// in-toto Signer.
func NewSigner(key crypto.Signer) (Signer, error) {
	id, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &signer{key: key, keyID: id}, nil
}

func (s *signer) KeyID() (string, error)   { return s.keyID, nil }
func (s *signer) Public() crypto.PublicKey { return s.key.Public() }

// Sign produces a signature in the scheme in-toto-golang and securesystemslib
// verify: raw ed25519; ECDSA ASN.1 over SHA-256 (P-256) or SHA-384/512 for
// larger curves; RSASSA-PSS with SHA-256 and a 32-byte salt.
func (s *signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	switch pub := s.key.Public().(type) {
	case ed25519.PublicKey:
		return s.key.Sign(rand.Reader, data, crypto.Hash(0))
	case *ecdsa.PublicKey:
		h, ch := ecdsaHash(pub.Curve)
		h.Write(data)
		return s.key.Sign(rand.Reader, h.Sum(nil), ch)
	case *rsa.PublicKey:
		d := sha256.Sum256(data)
		return s.key.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256})
	}
	return nil, fmt.Errorf("%w: unsupported public key type %T", ErrKey, s.key.Public())
}

func ecdsaHash(c elliptic.Curve) (hash.Hash, crypto.Hash) {
	switch c.Params().BitSize {
	case 384:
		return sha512.New384(), crypto.SHA384
	case 521:
		return sha512.New(), crypto.SHA512
	}
	return sha256.New(), crypto.SHA256
}

type verifier struct {
	pub   crypto.PublicKey
	keyID string
}

// NewVerifier returns a Verifier for a public key.
func NewVerifier(pub crypto.PublicKey) (Verifier, error) {
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &verifier{pub: pub, keyID: id}, nil
}

func (v *verifier) KeyID() (string, error)   { return v.keyID, nil }
func (v *verifier) Public() crypto.PublicKey { return v.pub }

func (v *verifier) Verify(_ context.Context, data, sig []byte) error {
	ok := false
	switch pub := v.pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, data, sig)
	case *ecdsa.PublicKey:
		h, _ := ecdsaHash(pub.Curve)
		h.Write(data)
		ok = ecdsa.VerifyASN1(pub, h.Sum(nil), sig)
	case *rsa.PublicKey:
		d := sha256.Sum256(data)
		ok = rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}) == nil
	}
	if !ok {
		return fmt.Errorf("%w: key %s", ErrSignature, short(v.keyID))
	}
	return nil
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// InTotoKey returns the in-toto public key object for pub, with its key ID,
// key type and scheme computed by in-toto-golang itself.
func InTotoKey(pub crypto.PublicKey) (in_toto.Key, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return in_toto.Key{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	var k in_toto.Key
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := k.LoadKeyReaderDefaults(strings.NewReader(string(pemBytes))); err != nil {
		return in_toto.Key{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return k, nil
}

// KeyID is the in-toto key ID of a public key.
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := InTotoKey(pub)
	if err != nil {
		return "", err
	}
	return k.KeyID, nil
}

// VerifierFromInTotoKey turns a key of a layout's "keys" map into a Verifier.
// The key ID is recomputed; a key whose ID does not match its content is rejected.
func VerifierFromInTotoKey(k in_toto.Key) (Verifier, error) {
	var pub crypto.PublicKey
	switch k.KeyType {
	case "ed25519":
		raw, err := hexDecode(k.KeyVal.Public)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key %s: bad ed25519 public value", ErrKey, short(k.KeyID))
		}
		pub = ed25519.PublicKey(raw)
	case "ecdsa", "rsa":
		p, err := ParsePublicKeyPEM([]byte(k.KeyVal.Public))
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", short(k.KeyID), err)
		}
		pub = p
	default:
		return nil, fmt.Errorf("%w: key %s: unsupported key type %q", ErrKey, short(k.KeyID), k.KeyType)
	}
	v, err := NewVerifier(pub)
	if err != nil {
		return nil, err
	}
	if id, _ := v.KeyID(); id != k.KeyID {
		return nil, fmt.Errorf("%w: key ID %s does not match its public key (computed %s)", ErrKey, short(k.KeyID), short(id))
	}
	return v, nil
}

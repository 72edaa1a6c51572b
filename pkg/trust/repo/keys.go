package repo

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/signing"
)

// TUFSigner adapts a stepseal signing.Signer (a key file, a cosign key, a KMS
// key) to the sigstore signature.Signer go-tuf signs with. stepseal's signing
// schemes are TUF's: raw ed25519, ECDSA P-256 ASN.1 over SHA-256, RSASSA-PSS
// SHA-256.
func TUFSigner(ctx context.Context, s signing.Signer) (signature.Signer, error) {
	if _, err := TUFKey(s.Public()); err != nil {
		return nil, err
	}
	return &tufSigner{ctx: ctx, s: s}, nil
}

type tufSigner struct {
	ctx context.Context
	s   signing.Signer
}

func (t *tufSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return t.s.Public(), nil
}

func (t *tufSigner) SignMessage(r io.Reader, _ ...signature.SignOption) ([]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return t.s.Sign(t.ctx, data)
}

// MinRSABits is the smallest RSA key a role may have.
const MinRSABits = 2048

// TUFKey returns a public key as TUF metadata. It refuses ECDSA curves other
// than P-256: go-tuf v2.4.2 labels every ECDSA key ecdsa-sha2-nistp256 and
// verifies with SHA-256, while stepseal signs P-384 with SHA-384.
func TUFKey(pub crypto.PublicKey) (*metadata.Key, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve != elliptic.P256() {
		return nil, &Error{Kind: ErrUnsupported, Detail: fmt.Sprintf("ECDSA curve %s: TUF roles take ed25519, ECDSA P-256 or RSA keys", k.Curve.Params().Name)}
	}
	if k, ok := pub.(*rsa.PublicKey); ok && k.N.BitLen() < MinRSABits {
		return nil, &Error{Kind: ErrUnsupported, Detail: fmt.Sprintf("RSA key of %d bits: TUF roles take RSA keys of at least %d bits", k.N.BitLen(), MinRSABits)}
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, &Error{Kind: ErrUnsupported, Detail: err.Error()}
	}
	return k, nil
}

// KeyID is the TUF key ID of a public key (sha256 of its canonical TUF key
// JSON; not the in-toto key ID of the same key).
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := TUFKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
}

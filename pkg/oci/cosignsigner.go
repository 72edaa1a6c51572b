package oci

import (
	"bytes"
	"context"
	"crypto"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/stepseal/stepseal/pkg/signing"
)

// CosignSigner returns a signing.Signer that signs in the scheme cosign and
// sigstore verify — for RSA keys PKCS#1 v1.5 over SHA-256 instead of
// in-toto's RSA-PSS; ECDSA and ed25519 signatures are the same in both.
// Sign DSSE envelopes with it (signing.SignEnvelope) when `cosign
// verify-attestation` must accept them with an RSA key. key must be an
// *ecdsa.PrivateKey, *rsa.PrivateKey or ed25519.PrivateKey.
func CosignSigner(key crypto.Signer) (signing.Signer, error) {
	sv, err := signature.LoadSignerVerifier(key, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", signing.ErrKey, err)
	}
	id, err := signing.KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &cosignSigner{sv: sv, keyID: id, pub: key.Public()}, nil
}

type cosignSigner struct {
	sv    signature.SignerVerifier
	keyID string
	pub   crypto.PublicKey
}

func (c *cosignSigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	return c.sv.SignMessage(bytes.NewReader(data))
}
func (c *cosignSigner) KeyID() (string, error)   { return c.keyID, nil }
func (c *cosignSigner) Public() crypto.PublicKey { return c.pub }

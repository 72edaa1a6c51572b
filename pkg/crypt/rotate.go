package crypt

import (
	"context"
	"crypto"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stepseal/stepseal/pkg/policy"
)

// Rotate re-encrypts an encrypted image to the recipients pol now names for
// ref, with fresh content keys and nonces: a platform removed from the policy
// may have kept the old content keys, so rewrapping them would not revoke
// it. Re-encryption needs the plaintext, so decryptionKey must open the old
// image: the private key of a platform that is still authorized, or of an
// escrow platform the publisher keeps. Stepseal has no hidden escrow
// recipient — an escrow key is a platform the policy names like any other,
// so CheckRecipients sees it. The old image's plaintext digests are verified
// while streaming (ErrDigest), and the result is lazy like EncryptFor's.
func Rotate(ctx context.Context, pol *policy.Policy, ref string, encrypted v1.Image, decryptionKey crypto.PrivateKey) (v1.Image, error) {
	if _, err := pol.Rule(ref); err != nil {
		return nil, err
	}
	plain, err := Decrypt(ctx, encrypted, decryptionKey)
	if err != nil {
		return nil, err
	}
	return EncryptFor(ctx, pol, ref, plain)
}

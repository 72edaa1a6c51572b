// Package signingtest makes keys for tests: a new signer and its verifier,
// failing the test on error.
package signingtest

import (
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
)

// Signer is a new ECDSA P-256 signer.
func Signer(t testing.TB) signing.Signer {
	t.Helper()
	return SignerOf(t, signing.ECDSA)
}

// SignerOf is a new signer of key type kt (ED25519 signs deterministically:
// the same document twice is the same bytes).
func SignerOf(t testing.TB, kt signing.KeyType) signing.Signer {
	t.Helper()
	k, err := signing.Generate(kt)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Verifier is s's verifier.
func Verifier(t testing.TB, s signing.Signer) signing.Verifier {
	t.Helper()
	v, err := signing.NewVerifier(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

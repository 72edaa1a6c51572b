package signing

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature/kms"
)

// IsKMSURI reports whether s has the form of a KMS key URI, scheme://rest
// (awskms://, gcpkms://, azurekms://, hashivault://, ...) rather than a file
// path. Whether a provider serves the scheme is known only to KMSSigner.
func IsKMSURI(s string) bool {
	scheme, rest, ok := strings.Cut(s, "://")
	return ok && rest != "" && scheme != "" && !strings.ContainsAny(scheme, "/ \t\n")
}

// KMSSigner returns a Signer whose private key stays in a KMS, through
// sigstore's KMS providers (the same URIs cosign and Tekton Chains take:
// awskms://, gcpkms://, azurekms://, hashivault://). A provider is available
// only when its package is linked in with a blank import (the controller's
// main imports all four). The KMS is asked for the public key once, here;
// every Sign is one KMS call.
func KMSSigner(ctx context.Context, uri string) (Signer, error) {
	sv, err := kms.Get(ctx, uri, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: KMS key %s: %w", ErrKey, uri, err)
	}
	cs, _, err := sv.CryptoSigner(ctx, func(error) {})
	if err != nil {
		return nil, fmt.Errorf("%w: KMS key %s: %w", ErrKey, uri, err)
	}
	s, err := NewSigner(cs)
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", uri, err)
	}
	return s, nil
}

package crypt

import (
	"errors"
	"fmt"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Error categories callers branch on with errors.Is. Errors from
// pkg/policy (policy.ErrNoRule, ...) are passed through unchanged. Each
// also matches its reason in stepseal's shared vocabulary (pkg/reject) and
// reject.ErrRefused: a registry that cannot be read is the caller's error
// (pkg/oci), not crypt's.
var (
	// ErrRecipients: an image's recipient set differs from the one the
	// policy names for its reference (extra, missing, unidentifiable or
	// mislabeled recipients). See RecipientsError. reject.ErrPolicy.
	ErrRecipients = reject.Sentinel(reject.ErrPolicy, "recipients differ from platform policy")
	// ErrNotRecipient: the decryption key is not a recipient of a layer:
	// its holder is not allowed to decrypt. reject.ErrUnauthorized.
	ErrNotRecipient = reject.Sentinel(reject.ErrUnauthorized, "key is not a recipient")
	// ErrDigest: a decrypted layer does not match what was encrypted (its
	// ciphertext HMAC or its plaintext digest). reject.ErrMismatch.
	ErrDigest = reject.Sentinel(reject.ErrMismatch, "layer digest mismatch")
	// ErrNotEncrypted: the policy requires encryption and a layer is not
	// encrypted. reject.ErrPolicy.
	ErrNotEncrypted = reject.Sentinel(reject.ErrPolicy, "layer not encrypted")
	// ErrUnsupported: an image or layer crypt cannot handle (already
	// encrypted, foreign layer, index, unknown cipher, a key type other
	// than RSA or EC). reject.ErrUnsupported.
	ErrUnsupported = reject.Sentinel(reject.ErrUnsupported, "unsupported for encryption")
	// ErrMalformed: encryption metadata (recipient entries, layer options)
	// or a private key that does not parse. It is also ErrUnsupported, as
	// it was before it had its own name, but its reason is
	// reject.ErrMalformed only.
	ErrMalformed error = &malformedError{}
)

type malformedError struct{}

func (*malformedError) Error() string { return "malformed encryption metadata" }

// Is matches ErrUnsupported (not its reason) and reject.ErrMalformed.
func (*malformedError) Is(target error) bool {
	return target == ErrUnsupported || reject.Matches(reject.ErrMalformed, target)
}

// RecipientsError reports how a layer's recipients differ from the policy.
type RecipientsError struct {
	Ref   string
	Layer int    // index in the manifest
	Blob  string // layer digest
	// Extra are recipients the policy does not name, described (platform
	// name or key fingerprint, algorithm, key shape). An extra recipient is
	// an attack: someone wants to decrypt who must not.
	Extra []string
	// Missing are platforms the policy names that are not recipients.
	Missing []string
}

func (e *RecipientsError) Error() string {
	var parts []string
	if len(e.Extra) > 0 {
		parts = append(parts, "extra: "+strings.Join(e.Extra, "; "))
	}
	if len(e.Missing) > 0 {
		parts = append(parts, "missing: "+strings.Join(e.Missing, ", "))
	}
	return fmt.Sprintf("%v: %s layer %d (%s): %s", ErrRecipients, e.Ref, e.Layer, e.Blob, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrRecipients) true, and its reason,
// reject.ErrPolicy.
func (e *RecipientsError) Is(target error) bool {
	return target == ErrRecipients || errors.Is(ErrRecipients, target)
}

package crypt

import (
	"errors"
	"fmt"
	"strings"
)

// Error categories callers branch on with errors.Is. Errors from
// pkg/policy (policy.ErrNoRule, ...) are passed through unchanged.
var (
	// ErrRecipients: an image's recipient set differs from the one the
	// policy names for its reference (extra, missing, unidentifiable or
	// mislabeled recipients). See RecipientsError.
	ErrRecipients = errors.New("recipients differ from platform policy")
	// ErrNotRecipient: the decryption key is not a recipient of a layer.
	ErrNotRecipient = errors.New("key is not a recipient")
	// ErrDigest: a decrypted layer does not match what was encrypted (its
	// ciphertext HMAC or its plaintext digest).
	ErrDigest = errors.New("layer digest mismatch")
	// ErrNotEncrypted: the policy requires encryption and a layer is not
	// encrypted.
	ErrNotEncrypted = errors.New("layer not encrypted")
	// ErrUnsupported: an image or layer crypt cannot handle (already
	// encrypted, foreign layer, index, unknown cipher, bad key).
	ErrUnsupported = errors.New("unsupported for encryption")
)

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

// Is makes errors.Is(err, ErrRecipients) true.
func (e *RecipientsError) Is(target error) bool { return target == ErrRecipients }

package publish

import (
	"errors"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Errors callers branch on with errors.Is. Failures found by the packages
// below are passed through with their own errors (oci.ErrSignature,
// oci.ErrNoSignature, policy.ErrNoRule, crypt.ErrNotRecipient, ...), which
// match pkg/reject's reasons too.
var (
	// ErrRecipients: an image's recipients are not exactly the platforms
	// the policy names for its repository, or it is not encrypted though
	// the policy says it must be. It is a reject.ErrPolicy; the error of
	// pkg/crypt that found it (crypt.ErrRecipients, crypt.RecipientsError)
	// stays reachable with errors.Is and errors.As.
	ErrRecipients = reject.Sentinel(reject.ErrPolicy, "recipients differ from platform policy")
	// ErrNeedPolicy: the image is encrypted and no policy was given to
	// check who else can decrypt it. A caller's omission, not a verdict.
	ErrNeedPolicy = errors.New("a platform policy is required")
	// ErrNeedDecryptionKey: the image is encrypted and no decryption key
	// was given to Pull.
	ErrNeedDecryptionKey = errors.New("a decryption key is required")
	// ErrArtifactDiffers: what was pulled back decrypts to other bytes than
	// the artifact that was published (PublishRunOutput). It is a
	// reject.ErrMismatch, and also crypt.ErrDigest.
	ErrArtifactDiffers = reject.Sentinel(reject.ErrMismatch, "pulled artifact differs from the published one")
)

// alsoError is err, worded as it is, that also matches also: a failure
// found by another package given this package's category (a recipient
// check of pkg/crypt that is ErrRecipients).
type alsoError struct{ err, also error }

func (e *alsoError) Error() string   { return e.err.Error() }
func (e *alsoError) Unwrap() []error { return []error{e.err, e.also} }

func recipientsError(err error) error { return &alsoError{err: err, also: ErrRecipients} }

package policy

import (
	"github.com/stepseal/stepseal/pkg/reject"
)

// Error categories callers branch on with errors.Is. Every error returned by
// this package wraps exactly one of them and names the file, field, key or
// reference involved. Each is also one reason of pkg/reject's shared
// vocabulary, noted per error.
var (
	// ErrInvalid: the policy document is malformed or violates a constraint
	// (unknown field, duplicate platform, unsupported or weak key, bad
	// pattern). It is a reject.ErrMalformed.
	ErrInvalid = reject.Sentinel(reject.ErrMalformed, "invalid platform policy")
	// ErrSignature: a signed policy did not verify with the owner keys, or a
	// signature was required and the policy is unsigned. It is a
	// reject.ErrSignature, as signing.ErrSignature is.
	ErrSignature = reject.Sentinel(reject.ErrSignature, "platform policy signature")
	// ErrRollback: the policy's version is older than the newest one the
	// caller has already accepted, or it is that version with other content
	// (a fork). It is a reject.ErrRollback (a refusal).
	ErrRollback = reject.Sentinel(reject.ErrRollback, "platform policy rollback")
	// ErrState: the record of accepted policy versions (State) could not be
	// read or written, so rollback could not be checked: the policy is not
	// used. It is never reset silently. It is a reject.ErrUnavailable (could
	// not check, not a refusal).
	ErrState = reject.Sentinel(reject.ErrUnavailable, "platform policy state")
	// ErrNoRule: no artifact rule covers a reference. Callers must refuse
	// the artifact (fail closed). It is a reject.ErrPolicy.
	ErrNoRule = reject.Sentinel(reject.ErrPolicy, "no platform policy rule for artifact")
	// ErrUnauthorizedPlatform: a platform (or key) is not one the rule for an
	// artifact names. It is a reject.ErrPolicy.
	ErrUnauthorizedPlatform = reject.Sentinel(reject.ErrPolicy, "platform not authorized for artifact")
)

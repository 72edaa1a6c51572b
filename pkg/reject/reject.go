package reject

import "errors"

// The two roots every Reason belongs to.
var (
	// ErrRefused matches every refusal: the evidence was checked and is not
	// acceptable.
	ErrRefused = errors.New("refused")
	// ErrUnableToCheck matches every failure to carry out a check.
	ErrUnableToCheck = errors.New("could not check")
)

// Reason is one shared category of failure.
type Reason struct {
	name   string
	unable bool
}

func (r *Reason) Error() string { return r.name }

// Is matches the Reason's root.
func (r *Reason) Is(target error) bool {
	if r.unable {
		return target == ErrUnableToCheck
	}
	return target == ErrRefused
}

// Refused reports whether r is a refusal (rather than a failure to check).
func (r *Reason) Refused() bool { return !r.unable }

func refusal(name string) *Reason { return &Reason{name: name} }

// Reasons for refusing.
var (
	// ErrSignature: a signature is missing, malformed, or does not verify
	// with the key it must verify with.
	ErrSignature = refusal("signature")
	// ErrUnauthorized: validly signed, but by a key or party that is not
	// allowed to certify this step or artifact.
	ErrUnauthorized = refusal("unauthorized")
	// ErrThreshold: fewer valid signatures or links than required.
	ErrThreshold = refusal("threshold")
	// ErrExpired: the metadata's validity has ended.
	ErrExpired = refusal("expired")
	// ErrRollback: older than what was already accepted, or a fork of it.
	ErrRollback = refusal("rollback")
	// ErrMismatch: content is not what a signed digest, proof or earlier
	// record binds (tampered, replaced, replayed from elsewhere).
	ErrMismatch = refusal("mismatch")
	// ErrMissing: evidence that must exist does not (a step's link, an
	// image's signature, an attestation, a log entry).
	ErrMissing = refusal("missing")
	// ErrArtifactRule: a rule of a layout refuses a material or product.
	ErrArtifactRule = refusal("artifact-rule")
	// ErrPolicy: a policy forbids it (an artifact no rule covers, recipients
	// other than the policy's platforms, a platform not allowed to decrypt).
	ErrPolicy = refusal("policy")
	// ErrStepFailed: the evidence records that a step failed.
	ErrStepFailed = refusal("step-failed")
	// ErrMalformed: the input does not parse or violates its format.
	ErrMalformed = refusal("malformed")
	// ErrUnsupported: a feature refused on purpose.
	ErrUnsupported = refusal("unsupported")
)

// ErrUnavailable: a registry, store, log or key service could not be reached
// or read, so the check could not be carried out.
var ErrUnavailable = &Reason{name: "unavailable", unable: true}

// sentinel is a package's sentinel error in one Reason.
type sentinel struct {
	reason *Reason
	msg    string
}

func (s *sentinel) Error() string { return s.msg }

// Is matches the Reason and its root; the sentinel itself matches by
// identity as any error does.
func (s *sentinel) Is(target error) bool { return Matches(s.reason, target) }

// Sentinel returns a new sentinel error with message msg in Reason r:
// errors.Is(err, it) for errors wrapping it, and also errors.Is(err, r) and
// errors.Is(err, r's root).
func Sentinel(r *Reason, msg string) error { return &sentinel{reason: r, msg: msg} }

// Matches reports whether target is r or r's root: what a typed error of
// Reason r returns from its Is method (besides its own type's checks).
func Matches(r *Reason, target error) bool {
	return r != nil && (target == r || r.Is(target))
}

// Of returns the Reason err matches, and nil if it matches none (an error
// of no check at all: a bug, bad arguments).
func Of(err error) *Reason {
	for _, r := range all {
		if errors.Is(err, r) {
			return r
		}
	}
	return nil
}

var all = []*Reason{ErrSignature, ErrUnauthorized, ErrThreshold, ErrExpired, ErrRollback, ErrMismatch, ErrMissing,
	ErrArtifactRule, ErrPolicy, ErrStepFailed, ErrMalformed, ErrUnsupported, ErrUnavailable}

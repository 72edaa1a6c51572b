package verify

import (
	"errors"
	"fmt"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Error categories, in the style of go-tuf's metadata/errors.go: every
// failure is a typed struct, and each sentinel below is a zero value of its
// type, so errors.Is(err, verify.ErrThreshold) matches any *ThresholdError
// (and errors.As extracts its fields). Every category also matches the root
// ErrVerification.
var (
	// ErrVerification matches every verification failure.
	ErrVerification error = &VerificationError{}
	// ErrLayoutSignature: the layout is not signed by the owner keys (or not
	// by enough of them), or its signature does not verify.
	ErrLayoutSignature error = &LayoutSignatureError{}
	// ErrExpired: the layout's expiry date is in the past.
	ErrExpired error = &ExpiredError{}
	// ErrSignature: a link's signature is missing, malformed or invalid.
	ErrSignature error = &SignatureError{}
	// ErrUnauthorized: a link is signed by a key the layout does not
	// authorize for that step.
	ErrUnauthorized error = &UnauthorizedError{}
	// ErrThreshold: a step has fewer valid links from distinct authorized
	// keys than its threshold.
	ErrThreshold error = &ThresholdError{}
	// ErrMissingStep: a step of the layout has no link at all.
	ErrMissingStep error = &MissingStepError{}
	// ErrUnknownStep: a link names a step the layout does not have, or its
	// signed step name differs from its file name.
	ErrUnknownStep error = &UnknownStepError{}
	// ErrDisagreement: two valid links of one step report different
	// materials or products.
	ErrDisagreement error = &DisagreementError{}
	// ErrRunMismatch: links come from different runs (stepseal.dev/run-id),
	// or not from the run the caller expects.
	ErrRunMismatch error = &RunMismatchError{}
	// ErrStepFailed: a link records that its step's command failed — a
	// non-zero return-value the layout does not allow (Tekton's
	// `onError: continue`), or a timeout, which fails a step even then.
	ErrStepFailed error = &StepFailedError{}
	// ErrNoReturnValue: a link records a command but no integer
	// return-value, so whether the step succeeded could not be checked.
	ErrNoReturnValue error = &NoReturnValueError{}
	// ErrArtifactRule: an artifact rule of the layout rejects a material or
	// product.
	ErrArtifactRule error = &ArtifactRuleError{}
	// ErrOutputArtifact: a declared output artifact is not the product of the
	// last step that produced it.
	ErrOutputArtifact error = &OutputArtifactError{}
	// ErrMalformed: a layout or link is not well-formed (JSON syntax,
	// duplicate or unknown keys, wrong types, size cap, bad rules).
	ErrMalformed error = &MalformedError{}
	// ErrSkip: a skip record does not excuse its task's missing links: the
	// layout does not let the task be skipped, the task also ran, the
	// recorded when expressions are not the layout's or hold on the
	// recorded inputs, or the cascade parent was not itself skipped.
	ErrSkip error = &SkipError{}
	// ErrRotatedKey: a link signed by a key the layout rotated out that the
	// transparency log the layout names does not show was logged before
	// the rotation.
	ErrRotatedKey error = &RotatedKeyError{}
	// ErrRevokedKey: a link signed by a key the layout revoked.
	ErrRevokedKey error = &RevokedKeyError{}
	// ErrUnsupported: the layout uses a feature this engine refuses on
	// purpose (inspections, sublayouts, certificate-based functionaries,
	// DSSE-wrapped metadata).
	ErrUnsupported error = &UnsupportedError{}
)

// is reports whether target is of category T, the root category, or the
// shared reason (pkg/reject) of category T and its root.
func is[T categorized](target error) bool {
	if _, ok := target.(T); ok {
		return true
	}
	if _, ok := target.(*VerificationError); ok || target == reject.ErrRefused {
		return true // every verification failure is a refusal
	}
	var zero T // a nil pointer: Category returns a constant
	return reject.Matches(reasons[zero.Category()], target)
}

// reasons maps each category to its reason in stepseal's shared vocabulary.
var reasons = map[string]*reject.Reason{
	"layout-signature": reject.ErrSignature,
	"expired":          reject.ErrExpired,
	"signature":        reject.ErrSignature,
	"unauthorized":     reject.ErrUnauthorized,
	"threshold":        reject.ErrThreshold,
	"missing-step":     reject.ErrMissing,
	"unknown-step":     reject.ErrUnauthorized,
	"disagreement":     reject.ErrMismatch,
	"run-mismatch":     reject.ErrMismatch,
	"step-failed":      reject.ErrStepFailed,
	"no-return-value":  reject.ErrMalformed,
	"artifact-rule":    reject.ErrArtifactRule,
	"output-artifact":  reject.ErrMismatch,
	"malformed":        reject.ErrMalformed,
	"unsupported":      reject.ErrUnsupported,
	"skip":             reject.ErrMissing,
	"rotated-key":      reject.ErrMissing,
	"revoked-key":      reject.ErrUnauthorized,
}

// stepped is implemented by failures that belong to one layout step.
type stepped interface{ stepName() string }

// categorized names a failure's category in JSON output.
type categorized interface{ Category() string }

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// VerificationError is the root category; Layout's returned error is an
// *Error holding every failure.
type VerificationError struct{ Msg string }

func (e *VerificationError) Error() string { return "verification failed: " + e.Msg }

// Is matches the root category.
func (e *VerificationError) Is(target error) bool { return is[*VerificationError](target) }

// Category names the failure category.
func (e *VerificationError) Category() string { return "verification" }

// LayoutSignatureError: the layout's signature by an owner key is missing or
// invalid, or too few owners signed.
type LayoutSignatureError struct {
	// Layout names the layout (a file, or a TUF target and its role).
	Layout string
	// KeyID is the owner's in-toto key ID.
	KeyID  string
	Reason string
}

func (e *LayoutSignatureError) Error() string {
	of := ""
	if e.Layout != "" && e.Layout != "layout" {
		of = " of " + e.Layout
	}
	if e.KeyID == "" {
		return "layout signature" + of + ": " + e.Reason
	}
	return fmt.Sprintf("layout signature%s by owner in-toto key %s: %s", of, short(e.KeyID), e.Reason)
}

// Is matches ErrLayoutSignature, signing.ErrSignature and ErrVerification.
func (e *LayoutSignatureError) Is(target error) bool {
	return target == signing.ErrSignature || is[*LayoutSignatureError](target)
}

// Category names the failure category.
func (e *LayoutSignatureError) Category() string { return "layout-signature" }

// ExpiredError: the layout expired.
type ExpiredError struct {
	Expires string
	Now     string
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("layout expired on %s (now %s)", e.Expires, e.Now)
}

// Is matches ErrExpired and ErrVerification.
func (e *ExpiredError) Is(target error) bool { return is[*ExpiredError](target) }

// Category names the failure category.
func (e *ExpiredError) Category() string { return "expired" }

// SignatureError: a link's signature is missing, not hex, or invalid.
type SignatureError struct {
	Step   string
	File   string
	KeyID  string
	Reason string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("step %q: link %s signed by key %s: %s", e.Step, e.File, short(e.KeyID), e.Reason)
}

// Is matches ErrSignature, signing.ErrSignature and ErrVerification.
func (e *SignatureError) Is(target error) bool {
	return target == signing.ErrSignature || is[*SignatureError](target)
}

// Category names the failure category.
func (e *SignatureError) Category() string { return "signature" }
func (e *SignatureError) stepName() string { return e.Step }

// UnauthorizedError: a link is signed by a key the layout does not allow for
// its step.
type UnauthorizedError struct {
	Step  string
	File  string
	KeyID string
	// Reason, when set, says why the key is not authorized although the
	// step lists it (it may sign only skip records, or only links of a run).
	Reason string
}

func (e *UnauthorizedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("step %q: link %s is signed by key %s: %s", e.Step, e.File, short(e.KeyID), e.Reason)
	}
	return fmt.Sprintf("step %q: link %s is signed by key %s, which the layout does not authorize for this step", e.Step, e.File, short(e.KeyID))
}

// Is matches ErrUnauthorized and ErrVerification.
func (e *UnauthorizedError) Is(target error) bool { return is[*UnauthorizedError](target) }

// Category names the failure category.
func (e *UnauthorizedError) Category() string { return "unauthorized" }
func (e *UnauthorizedError) stepName() string { return e.Step }

// ThresholdError: fewer valid links from distinct authorized keys than the
// step's threshold.
type ThresholdError struct {
	Step      string
	Threshold int
	Valid     []string // key IDs with a valid, authorized link
	Links     int      // link files found for the step
}

func (e *ThresholdError) Error() string {
	keys := make([]string, len(e.Valid))
	for i, k := range e.Valid {
		keys[i] = short(k)
	}
	return fmt.Sprintf("step %q: threshold %d not met: %d valid link(s) from distinct authorized keys [%s] out of %d link file(s)",
		e.Step, e.Threshold, len(e.Valid), strings.Join(keys, " "), e.Links)
}

// Is matches ErrThreshold and ErrVerification.
func (e *ThresholdError) Is(target error) bool { return is[*ThresholdError](target) }

// Category names the failure category.
func (e *ThresholdError) Category() string { return "threshold" }
func (e *ThresholdError) stepName() string { return e.Step }

// MissingStepError: no link at all for a layout step.
type MissingStepError struct {
	Step string
	Keys []string // key IDs the layout authorizes for the step
}

func (e *MissingStepError) Error() string {
	names := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		names[i] = seal.LinkName(e.Step, k)
	}
	return fmt.Sprintf("step %q: no link found (expected %s)", e.Step, strings.Join(names, " or "))
}

// Is matches ErrMissingStep and ErrVerification.
func (e *MissingStepError) Is(target error) bool { return is[*MissingStepError](target) }

// Category names the failure category.
func (e *MissingStepError) Category() string { return "missing-step" }
func (e *MissingStepError) stepName() string { return e.Step }

// UnknownStepError: a link file that belongs to no layout step, or whose
// signed name is not the step its file name says.
type UnknownStepError struct {
	File       string
	SignedName string
	Reason     string
}

func (e *UnknownStepError) Error() string {
	return fmt.Sprintf("link %s (signed step name %q): %s", e.File, e.SignedName, e.Reason)
}

// Is matches ErrUnknownStep and ErrVerification.
func (e *UnknownStepError) Is(target error) bool { return is[*UnknownStepError](target) }

// Category names the failure category.
func (e *UnknownStepError) Category() string { return "unknown-step" }

// DisagreementError: two valid links of one step report different artifacts.
type DisagreementError struct {
	Step     string
	File     string
	Other    string
	Artifact string
	Kind     string // "materials" or "products"
}

func (e *DisagreementError) Error() string {
	return fmt.Sprintf("step %q: links %s and %s report different %s (first difference: %q)", e.Step, e.File, e.Other, e.Kind, e.Artifact)
}

// Is matches ErrDisagreement and ErrVerification.
func (e *DisagreementError) Is(target error) bool { return is[*DisagreementError](target) }

// Category names the failure category.
func (e *DisagreementError) Category() string { return "disagreement" }
func (e *DisagreementError) stepName() string { return e.Step }

// DuplicateLinkError: a store holds two different links of one run under
// one name (one step, one key): a pipeline task fanned out by a matrix,
// whose TaskRuns all sign links of the same step, or a link copied in.
// Which one is the step's cannot be told, so the run is refused; it is a
// disagreement (errors.Is(err, ErrDisagreement)).
type DuplicateLinkError struct {
	Step  string
	File  string
	RunID string
}

func (e *DuplicateLinkError) Error() string {
	return fmt.Sprintf("step %q: run %s has two different links named %s (a matrix fan-out, or a link copied in): which one is the step's cannot be told", e.Step, e.RunID, e.File)
}

// Is matches ErrDisagreement and ErrVerification.
func (e *DuplicateLinkError) Is(target error) bool { return is[*DisagreementError](target) }

// Category names the failure category.
func (e *DuplicateLinkError) Category() string { return "disagreement" }
func (e *DuplicateLinkError) stepName() string { return e.Step }

// RunMismatchError: a link's stepseal.dev/run-id differs from the run the
// other links (or the caller) name.
type RunMismatchError struct {
	Step string
	File string
	Got  string
	Want string
}

func (e *RunMismatchError) Error() string {
	got := e.Got
	if got == "" {
		got = "no run id"
	}
	return fmt.Sprintf("step %q: link %s comes from run %q, expected run %q (a link replayed from another run)", e.Step, e.File, got, e.Want)
}

// Is matches ErrRunMismatch and ErrVerification.
func (e *RunMismatchError) Is(target error) bool { return is[*RunMismatchError](target) }

// Category names the failure category.
func (e *RunMismatchError) Category() string { return "run-mismatch" }
func (e *RunMismatchError) stepName() string { return e.Step }

// StepFailedError: a valid link records that its step failed.
type StepFailedError struct {
	Step        string
	File        string
	KeyID       string
	ReturnValue int64
	// TimedOut: a timeout killed the step.
	TimedOut bool
	// MayFail: the layout lets the step fail (only a timeout is then refused).
	MayFail bool
}

func (e *StepFailedError) Error() string {
	if e.TimedOut && e.MayFail {
		return fmt.Sprintf("step %q: link %s (key %s) records that the step timed out (return-value %d): a timed-out step fails even though the layout lets it fail, as in Tekton", e.Step, e.File, short(e.KeyID), e.ReturnValue)
	}
	if e.TimedOut {
		return fmt.Sprintf("step %q: link %s (key %s) records that the step timed out (return-value %d)", e.Step, e.File, short(e.KeyID), e.ReturnValue)
	}
	return fmt.Sprintf("step %q: link %s (key %s) records return-value %d: the step's command failed, and the layout does not let this step fail (Tekton onError: continue)", e.Step, e.File, short(e.KeyID), e.ReturnValue)
}

// Is matches ErrStepFailed and ErrVerification.
func (e *StepFailedError) Is(target error) bool { return is[*StepFailedError](target) }

// Category names the failure category.
func (e *StepFailedError) Category() string { return "step-failed" }
func (e *StepFailedError) stepName() string { return e.Step }

// NoReturnValueError: a valid link whose command's outcome is not recorded,
// so it could not be checked. A link of no command at all (in-toto-run
// --no-command) has nothing to check and is not an error.
type NoReturnValueError struct {
	Step  string
	File  string
	KeyID string
	// Raw is the return-value's JSON text when present but not an integer.
	Raw string
}

func (e *NoReturnValueError) Error() string {
	if e.Raw != "" {
		return fmt.Sprintf("step %q: link %s (key %s): return-value %s is not an integer: whether the step's command succeeded cannot be checked", e.Step, e.File, short(e.KeyID), e.Raw)
	}
	return fmt.Sprintf("step %q: link %s (key %s) records a command but no return-value byproduct: whether it succeeded cannot be checked", e.Step, e.File, short(e.KeyID))
}

// Is matches ErrNoReturnValue and ErrVerification.
func (e *NoReturnValueError) Is(target error) bool { return is[*NoReturnValueError](target) }

// Category names the failure category.
func (e *NoReturnValueError) Category() string { return "no-return-value" }
func (e *NoReturnValueError) stepName() string { return e.Step }

// ArtifactRuleError: an artifact rule rejected a material or product.
type ArtifactRuleError struct {
	Step     string
	Kind     string // "material" or "product"
	Artifact string
	Rule     string
	Reason   string
}

func (e *ArtifactRuleError) Error() string {
	if e.Artifact == "" {
		return fmt.Sprintf("step %q: %s", e.Step, e.Reason)
	}
	return fmt.Sprintf("step %q: %s %q %s", e.Step, e.Kind, e.Artifact, e.Reason)
}

// Is matches ErrArtifactRule and ErrVerification.
func (e *ArtifactRuleError) Is(target error) bool { return is[*ArtifactRuleError](target) }

// Category names the failure category.
func (e *ArtifactRuleError) Category() string { return "artifact-rule" }
func (e *ArtifactRuleError) stepName() string { return e.Step }

// OutputArtifactError: a declared output artifact does not equal the product
// of the last step that produced it.
type OutputArtifactError struct {
	Artifact string
	Step     string
	Reason   string
}

func (e *OutputArtifactError) Error() string {
	if e.Step == "" {
		return fmt.Sprintf("output artifact %q: %s", e.Artifact, e.Reason)
	}
	return fmt.Sprintf("output artifact %q (product of step %q): %s", e.Artifact, e.Step, e.Reason)
}

// Is matches ErrOutputArtifact and ErrVerification.
func (e *OutputArtifactError) Is(target error) bool { return is[*OutputArtifactError](target) }

// Category names the failure category.
func (e *OutputArtifactError) Category() string { return "output-artifact" }
func (e *OutputArtifactError) stepName() string { return e.Step }

// MalformedError: a layout or link file that is not well-formed.
type MalformedError struct {
	File   string
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("%s: malformed: %s", e.File, e.Reason)
}

// Is matches ErrMalformed and ErrVerification.
func (e *MalformedError) Is(target error) bool { return is[*MalformedError](target) }

// Category names the failure category.
func (e *MalformedError) Category() string { return "malformed" }

// UnsupportedError: a layout feature this engine refuses on purpose.
type UnsupportedError struct {
	File    string
	Feature string
	Reason  string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: unsupported %s: %s", e.File, e.Feature, e.Reason)
}

// Is matches ErrUnsupported and ErrVerification.
func (e *UnsupportedError) Is(target error) bool { return is[*UnsupportedError](target) }

// Category names the failure category.
func (e *UnsupportedError) Category() string { return "unsupported" }

// Error is returned by Layout when verification fails. It holds every
// failure found; errors.Is matches each of their categories.
type Error struct {
	Failures []error
}

// maxListed bounds how many failures Error() spells out.
const maxListed = 10

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verification failed (%d failure", len(e.Failures))
	if len(e.Failures) != 1 {
		b.WriteByte('s')
	}
	b.WriteString(")")
	for i, f := range e.Failures {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(e.Failures)-maxListed)
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap returns every failure, so errors.Is and errors.As see each.
func (e *Error) Unwrap() []error { return e.Failures }

// Is matches the root category ErrVerification.
func (e *Error) Is(target error) bool {
	_, ok := target.(*VerificationError)
	return ok
}

// category returns the JSON category name of a failure.
func category(err error) string {
	var c categorized
	if errors.As(err, &c) {
		return c.Category()
	}
	return "error"
}

// SkipError: a skip record (a link the orchestrator signs for a step of a
// task Tekton skipped) that does not excuse the task's missing links.
type SkipError struct {
	Task  string
	Step  string
	File  string
	KeyID string
	// Reason says which check refused the skip.
	Reason string
}

func (e *SkipError) Error() string {
	at := fmt.Sprintf("task %q", e.Task)
	if e.Step != "" {
		at += fmt.Sprintf(" step %q", e.Step)
	}
	if e.File != "" {
		at += fmt.Sprintf(": skip record %s", e.File)
		if e.KeyID != "" {
			at += fmt.Sprintf(" (key %s)", short(e.KeyID))
		}
	}
	return fmt.Sprintf("%s: %s", at, e.Reason)
}

// Is matches ErrSkip and ErrVerification.
func (e *SkipError) Is(target error) bool { return is[*SkipError](target) }

// Category names the failure category.
func (e *SkipError) Category() string { return "skip" }
func (e *SkipError) stepName() string { return e.Step }

// RotatedKeyError: a link signed by a key the layout rotated out
// (attest.KeyRotation) without proof that the log the layout names held it
// below the tree size recorded at the rotation: no evidence, a log that is
// not the one named, a proof that does not verify, or a link logged at or
// after the rotation.
type RotatedKeyError struct {
	Step  string
	File  string
	KeyID string
	// Layout names the layout that rotated the key out.
	Layout string
	// Log is the log's origin, LogSize its tree size at the rotation.
	Log     string
	LogSize uint64
	Reason  string
	// cause is the evidence's error (or reject.ErrMissing for none): its
	// reason is this failure's.
	cause error
}

func (e *RotatedKeyError) Error() string {
	return fmt.Sprintf("step %q: link %s is signed by in-toto key %s, rotated out at log size %d of log %q by layout %s: %s",
		e.Step, e.File, short(e.KeyID), e.LogSize, e.Log, e.Layout, e.Reason)
}

// Is matches ErrRotatedKey and ErrVerification, and the shared reason of
// what refused the evidence (reject.ErrMissing when there was none or the
// log did not hold the link in time, reject.ErrMismatch for a log that is
// not the one named or a proof that does not verify).
func (e *RotatedKeyError) Is(target error) bool {
	if _, ok := target.(*RotatedKeyError); ok {
		return true
	}
	if _, ok := target.(*VerificationError); ok || target == reject.ErrRefused {
		return true
	}
	if r, ok := target.(*reject.Reason); ok {
		c := reject.Of(e.cause)
		if c == nil {
			c = reject.ErrMissing
		}
		return c == r
	}
	return false
}

// Category names the failure category.
func (e *RotatedKeyError) Category() string { return "rotated-key" }
func (e *RotatedKeyError) stepName() string { return e.Step }

// RevokedKeyError: a link signed by a key the layout revoked
// (attest.KeyRevocation): everything the key signed is refused.
type RevokedKeyError struct {
	Step  string
	File  string
	KeyID string
	// Layout names the layout that revoked the key.
	Layout string
	// Reason is the revocation's reason, as the owners wrote it.
	Reason string
}

func (e *RevokedKeyError) Error() string {
	return fmt.Sprintf("step %q: link %s is signed by in-toto key %s, revoked by layout %s (reason: %s)", e.Step, e.File, short(e.KeyID), e.Layout, e.Reason)
}

// Is matches ErrRevokedKey, ErrUnauthorized's shared reason and
// ErrVerification.
func (e *RevokedKeyError) Is(target error) bool { return is[*RevokedKeyError](target) }

// Category names the failure category.
func (e *RevokedKeyError) Category() string { return "revoked-key" }
func (e *RevokedKeyError) stepName() string { return e.Step }

// Package reject is stepseal's one vocabulary of rejections: the reasons
// every verifier (in-toto verification, the transparency log, signatures,
// OCI artifacts, encryption, platform policy) gives when it refuses, shared
// so that a caller — a CLI, a Task, a controller, an admission webhook —
// can act on the reason without knowing which package found it.
//
// Two roots divide every failure of a check:
//
//   - ErrRefused: the evidence was examined and is not acceptable (a bad
//     signature, a rollback, a rule that forbids the artifact). Deny.
//   - ErrUnableToCheck: the check could not be carried out (a registry or
//     store unreachable, an I/O error, a log that has not integrated the
//     entry yet). Retry or report; never read it as a verdict either way.
//
// Each Reason belongs to one root. Packages keep their own typed errors and
// sentinels (errors.Is(err, tlog.ErrRollback) still works) and make them
// match a Reason too, in the style of go-tuf's metadata/errors.go: with
// Sentinel for plain sentinels, with Matches in the Is method of typed
// errors.
package reject

package tlog

import "github.com/stepseal/stepseal/pkg/reject"

// Error categories callers branch on with errors.Is. Messages name the
// index, tree sizes and origin involved. Each also matches its reason in
// stepseal's shared vocabulary (pkg/reject) and its root: every one is
// reject.ErrRefused but ErrUnavailable, which is reject.ErrUnableToCheck.
var (
	// ErrBadCheckpoint: a checkpoint does not parse, is not signed by the
	// log's key, names another origin, or was not obtained by verifying one.
	ErrBadCheckpoint = reject.Sentinel(reject.ErrSignature, "bad checkpoint")
	// ErrInclusion: an entry is not included at the claimed index in the
	// tree a checkpoint commits to (the entry's bytes or the log's tiles
	// were changed, or a proof is missing or malformed).
	ErrInclusion = reject.Sentinel(reject.ErrMismatch, "inclusion proof failed")
	// ErrConsistency: a newer checkpoint's tree does not extend an older
	// one's (the log was rewritten or its tiles changed).
	ErrConsistency = reject.Sentinel(reject.ErrMismatch, "consistency proof failed")
	// ErrFork: two checkpoints signed by the log's key commit to different
	// trees of the same size. A fork is also an ErrConsistency.
	ErrFork = reject.Sentinel(reject.ErrRollback, "log forked")
	// ErrRollback: a checkpoint's tree is smaller than one already seen
	// (the log was truncated or an old checkpoint was replayed).
	ErrRollback = reject.Sentinel(reject.ErrRollback, "checkpoint rolled back")
	// ErrNotIntegrated: an index at or beyond the tree size asked about.
	ErrNotIntegrated = reject.Sentinel(reject.ErrMissing, "index not in tree")
	// ErrTooLarge: an entry larger than a tlog-tiles entry may be.
	ErrTooLarge = reject.Sentinel(reject.ErrMalformed, "entry too large")
	// ErrUnavailable: the log's checkpoint, tiles or entry bundles could not
	// be read (network, HTTP status, permissions, I/O), so nothing was
	// checked: reject.ErrUnavailable, under reject.ErrUnableToCheck. A
	// resource the signed tree commits to that the log says is not there is
	// a refusal instead (ErrInclusion, ErrConsistency, ErrBadCheckpoint).
	ErrUnavailable = reject.Sentinel(reject.ErrUnavailable, "log unavailable")
)

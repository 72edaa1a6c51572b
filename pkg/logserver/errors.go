package logserver

import "github.com/stepseal/stepseal/pkg/reject"

// Errors callers branch on with errors.Is; each also matches its reason in
// pkg/reject and that reason's root. Messages name the document (digest),
// the subject and the key involved.
var (
	// ErrDocument: a body that is not a document the log accepts (not a
	// DSSE envelope of an in-toto statement nor an in-toto link or layout
	// Metablock, too large, too many subjects, a malformed subject).
	ErrDocument = reject.Sentinel(reject.ErrMalformed, "not a document the log accepts")
	// ErrNotAllowed: a document no key of the server's allow-list signed
	// validly (unsigned, signed by another key, or a signature not over
	// this content).
	ErrNotAllowed = reject.Sentinel(reject.ErrUnauthorized, "not signed by an allowed key")
	// ErrAnswer: a server's answer that does not match what was asked or
	// what its proofs bind (an altered record, a result outside the query,
	// results out of order, a proof of another entry). Proof failures
	// themselves are tlog.ErrInclusion, tlog.ErrRollback, tlog.ErrBadCheckpoint.
	ErrAnswer = reject.Sentinel(reject.ErrMismatch, "log server answer does not match")
	// ErrIncomplete: a search answer that left out an entry of the log that
	// matches the query (found only by Audit, which rebuilds the index).
	ErrIncomplete = reject.Sentinel(reject.ErrMissing, "search answer incomplete")
	// ErrIndexCorrupt: an index row that does not match the log entry it
	// points to (an injected or altered row).
	ErrIndexCorrupt = reject.Sentinel(reject.ErrMismatch, "index row does not match the log")
	// ErrNotFound: no entry with this digest is in the log.
	ErrNotFound = reject.Sentinel(reject.ErrMissing, "no such entry in the log")
	// ErrBusy: the server pushed back (too many appends in flight); retry
	// after a while. No verdict.
	ErrBusy = reject.Sentinel(reject.ErrUnavailable, "log server busy")
	// ErrGossipUnverifiable: a gossiped checkpoint (another party's view of
	// the log) signed by the log's key but without the cosignatures the
	// client's witness policy requires. It is not evidence of a split view
	// either way — no client requiring the policy would have accepted it —
	// so it is not compared, and reported as a check that could not be
	// made (reject.ErrUnavailable).
	ErrGossipUnverifiable = reject.Sentinel(reject.ErrUnavailable, "gossiped checkpoint lacks the witness cosignatures required")
	// ErrUnavailable: the server could not be reached or answered with an
	// unexpected status. No verdict.
	ErrUnavailable = reject.Sentinel(reject.ErrUnavailable, "log server unavailable")
)

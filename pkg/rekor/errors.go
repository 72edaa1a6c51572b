package rekor

import "github.com/stepseal/stepseal/pkg/reject"

// Errors callers branch on with errors.Is. Messages name the key, log,
// index or subject involved; each is one reason of pkg/reject's vocabulary
// (noted per error).
var (
	// ErrKeyNotLoggable: the signing key's signatures cannot be logged in
	// Rekor v2 (pure Ed25519, RSA-PSS, unknown types): refused before the
	// log is contacted. reject.ErrUnsupported.
	ErrKeyNotLoggable = reject.Sentinel(reject.ErrUnsupported, "key cannot be logged in Rekor v2")
	// ErrBundle: not a Sigstore bundle v0.3 of a DSSE envelope with a
	// public-key hint and a hashedrekord v0.0.2 entry. reject.ErrMalformed.
	ErrBundle = reject.Sentinel(reject.ErrMalformed, "not a Sigstore bundle of a DSSE attestation")
	// ErrSignature: the envelope's signature does not verify with the
	// signer's key (payload or signature changed). reject.ErrSignature.
	ErrSignature = reject.Sentinel(reject.ErrSignature, "DSSE signature does not verify")
	// ErrSubject: the statement is not about the artifact expected.
	// reject.ErrMismatch.
	ErrSubject = reject.Sentinel(reject.ErrMismatch, "attestation is about another artifact")
	// ErrNoEntry: the bundle carries no transparency log entry.
	// reject.ErrMissing.
	ErrNoEntry = reject.Sentinel(reject.ErrMissing, "no transparency log entry")
	// ErrUnknownLog: the entry is from a log the verifier does not trust.
	// reject.ErrUnauthorized.
	ErrUnknownLog = reject.Sentinel(reject.ErrUnauthorized, "entry from an untrusted log")
	// ErrCheckpoint: the entry's checkpoint is not signed by its log's key
	// under its origin (a checkpoint of another log, or edited).
	// reject.ErrSignature.
	ErrCheckpoint = reject.Sentinel(reject.ErrSignature, "checkpoint not signed by the log")
	// ErrEntry: the logged entry is not the envelope's (another digest,
	// signature or key). reject.ErrMismatch.
	ErrEntry = reject.Sentinel(reject.ErrMismatch, "log entry does not match the envelope")
	// ErrInclusion: the inclusion proof does not prove the entry in the
	// checkpoint's tree (proof swapped, index changed). reject.ErrMismatch.
	ErrInclusion = reject.Sentinel(reject.ErrMismatch, "inclusion proof does not verify")
	// ErrLogRefused: the log answered the entry with a refusal (4xx other
	// than a duplicate). reject.ErrUnsupported.
	ErrLogRefused = reject.Sentinel(reject.ErrUnsupported, "Rekor refused the entry")
	// ErrUnavailable: the log could not be reached or read.
	// reject.ErrUnavailable (could not check).
	ErrUnavailable = reject.Sentinel(reject.ErrUnavailable, "Rekor unavailable")
)

// ErrNoBundle: no bundle to verify (none attached to an image).
// reject.ErrMissing.
var ErrNoBundle = reject.Sentinel(reject.ErrMissing, "no Sigstore bundle")

// Package vsa builds, signs and verifies SLSA Verification Summary
// Attestations (VSA v1, https://slsa.dev/verification_summary/v1): a
// verifier's signed statement that it verified a run's evidence against a
// policy — for stepseal, the run's links against the in-toto layout its
// owners released through TUF — with the result and the attestations it
// read. Admission trusts a PASSED VSA signed by the controller's verifier
// key instead of re-verifying every link.
//
// Verify is admission-grade: the caller names the verifier key, the
// verifier ID, the artifact digest, the resource URI and the current
// layout digest it expects, and every check that fails is a typed error of
// pkg/reject's vocabulary naming what differed. Each input attestation
// carries the key IDs that signed it (ExtInputSigners), so that a consumer
// with a RevocationLookup refuses a VSA one of whose inputs a key revoked
// since signed (RevokedInputError).
package vsa

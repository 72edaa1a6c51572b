// Package rekor publishes stepseal's signed DSSE attestations to a Rekor v2
// transparency log (sigstore/rekor-tiles) and turns the log's answer into a
// Sigstore bundle (v0.3: public-key hint, transparency log entry with its
// inclusion proof and checkpoint, DSSE envelope) that cosign
// verify-blob-attestation --new-bundle-format and sigstore-go verify.
//
// Rekor v2 logs only hashedrekord v0.0.2 entries, so an envelope is logged
// as the digest of its DSSE pre-authentication encoding (PAE) with its
// signature and the signer's public key, the way Rekor's CLIENTS.md asks.
// Every entry the log returns — newly logged, or the existing one a
// duplicate points at, read back from the log's tiles — is verified
// against the log's public key (checkpoint signature, the leaf rebuilt from
// the envelope, inclusion) before a bundle is handed out: Verify is the
// same check a consumer runs, with errors of pkg/reject's vocabulary.
package rekor

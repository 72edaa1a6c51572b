// Package signing holds stepseal's signers and verifiers: ed25519, ECDSA P-256
// and RSA keys read from PEM (PKCS#8/PKIX) or cosign's encrypted key files,
// key IDs computed exactly as in-toto-golang computes them, signatures in the
// in-toto schemes (ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256), DSSE
// envelopes, and in-toto Metablock signing.
package signing

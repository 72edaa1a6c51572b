// Package crypt encrypts OCI images to exactly the platforms a platform
// policy names for their reference, and nothing else: every layer is
// encrypted with ocicrypt's AES-256-CTR + HMAC-SHA256 block cipher and its
// content key wrapped with ocicrypt's JWE key wrapper (media types
// "+encrypted", "org.opencontainers.image.enc.*" annotations), so skopeo and
// containerd imgcrypt decrypt it with a platform's private key. It also reads
// an encrypted image's recipients and checks them against the policy,
// decrypts with the plaintext digest verified, and rotates content keys when
// a platform is removed.
package crypt

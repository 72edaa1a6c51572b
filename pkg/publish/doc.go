// Package publish is stepseal's supply-chain workflow over OCI registries:
// Publish pushes an artifact encrypted to exactly the platforms the
// platform policy names, signed and attested, and moves its tag only once
// it is; Check resolves a reference to a digest and verifies its signature
// and that its recipients are the policy's, without decrypting (what an
// admission webhook calls); Pull is Check, decryption and digest checks;
// Rotate re-encrypts to the policy as it is now. The CLI (stepseal
// publish, pull, crypt) and the embedded default (stepseal run) call it;
// every refusal is a typed error of pkg/reject's vocabulary.
package publish

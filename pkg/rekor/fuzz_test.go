package rekor_test

import (
	"errors"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/rekor"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

// FuzzVerify: any bytes given to Verify as a bundle are refused with an
// error of pkg/reject's vocabulary (never a panic, never accepted: no
// entry of the fuzz log can exist).
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"},"tlogEntries":[{"logIndex":"0","logId":{"keyId":"AA=="},"kindVersion":{"kind":"hashedrekord","version":"0.0.2"},"inclusionProof":{"logIndex":"0","rootHash":"AA==","treeSize":"1","hashes":[],"checkpoint":{"envelope":"rekor.local\n1\nAA==\n"}},"canonicalizedBody":"e30="}]},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA==","keyid":""}]}}`))
	f.Add([]byte(`[]`))
	s := signingtest.Signer(f)
	logKey := signingtest.SignerOf(f, signing.ED25519)
	logs := []rekor.Log{{URL: "http://127.0.0.1:1", Origin: "rekor.local", PublicKey: logKey.Public()}}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := rekor.Verify(data, rekor.VerifyOptions{Key: s.Public(), Logs: logs, AnySubjectUnsafe: true})
		if err == nil {
			t.Fatal("accepted")
		}
		if !errors.Is(err, reject.ErrRefused) {
			t.Fatalf("not a refusal: %v", err)
		}
	})
}

package rekor

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Media types and OCI annotations of Sigstore bundles.
const (
	// MediaTypeBundle is the media type of the bundles this package writes
	// (Sigstore bundle v0.3), also the artifactType of their OCI referrers.
	MediaTypeBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// FileSuffix is the conventional file name ending of a bundle.
	FileSuffix = ".sigstore.json"
)

// bundleJSON is the Sigstore bundle v0.3 of env's signature sig (by pub)
// logged as tle: the public-key hint, the entry, the envelope with that
// one signature. The signature's keyid is left empty, as cosign writes it:
// it is an unsigned hint, and sigstore-go skips a signature whose keyid is
// not its own SHA-256 key ID (stepseal's are in-toto key IDs).
func bundleJSON(env *dsse.Envelope, sig dsse.Signature, pub crypto.PublicKey, tle *protorekor.TransparencyLogEntry) ([]byte, error) {
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload is not base64", ErrBundle)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Sig)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope signature is not base64", ErrBundle)
	}
	hint, err := KeyHint(pub)
	if err != nil {
		return nil, err
	}
	b := &protobundle.Bundle{
		MediaType: MediaTypeBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint}},
			TlogEntries: []*protorekor.TransparencyLogEntry{tle},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     payload,
			PayloadType: env.PayloadType,
			Signatures:  []*protodsse.Signature{{Sig: raw}},
		}},
	}
	return stableJSON(b)
}

// stableJSON is protojson's encoding of m with its whitespace normalised:
// protojson varies whitespace on purpose, and a bundle's bytes are hashed
// (OCI layers, files), so the same bundle must encode the same.
func stableJSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, err
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

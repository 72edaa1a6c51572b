package oci

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Signature is a verified cosign signature of an image digest.
type Signature struct {
	// KeyID is the in-toto key ID of the key that verified it.
	KeyID string
	// Payload is the signed simple-signing document.
	Payload []byte
	// Source is the tag or referrer it was read from.
	Source string
}

// Attestation is a verified attestation of an image digest.
type Attestation struct {
	KeyID         string
	PredicateType string
	Envelope      *dsse.Envelope
	// Statement is the envelope's decoded payload (an in-toto statement).
	Statement []byte
	Source    string
}

// VerifySignatures finds the cosign signatures of the image at ref — in the
// sha256-<hex>.sig image, then among its OCI 1.1 referrers (API or tag-scheme
// fallback) — and returns those that verify with pub and whose payload names
// ref's digest. It fails closed:
//
//  1. nothing attached → ErrNoSignature;
//  2. no signature verifies with pub → ErrSignature;
//  3. every valid signature names another digest (copied from another image) → ErrDigestMismatch.
//
// Verification is by digest only: resolve a tag first (Resolve) and verify
// the digest you will then use.
func VerifySignatures(ctx context.Context, ref name.Digest, pub crypto.PublicKey, opts ...Option) ([]Signature, error) {
	c, err := New(opts...)
	if err != nil {
		return nil, err
	}
	return c.VerifySignatures(ctx, ref, pub)
}

// VerifySignatures finds the cosign signatures of the image at ref — in the
// sha256-<hex>.sig image, then among its OCI 1.1 referrers (API or tag-scheme
// fallback) — and returns those that verify with pub and whose payload names
// ref's digest. See the package-level VerifySignatures.
func (c *Client) VerifySignatures(ctx context.Context, ref name.Digest, pub crypto.PublicKey) ([]Signature, error) {
	ref, err := bindDigest(ref, c.o)
	if err != nil {
		return nil, err
	}
	keyID, sv, err := cosignVerifier(pub)
	if err != nil {
		return nil, err
	}
	blobs, err := c.candidates(ctx, ref, SignatureTag(ref), []string{ArtifactTypeSignature}, MediaTypeSimpleSigning)
	if err != nil {
		return nil, err
	}
	if len(blobs) == 0 {
		return nil, fmt.Errorf("%w: %s has no signature (looked at %s and its referrers)", ErrNoSignature, ref, SignatureTag(ref).TagStr())
	}
	var out []Signature
	var mismatch string
	for _, b := range blobs {
		sig, err := base64.StdEncoding.DecodeString(b.annotations[AnnotationSignature])
		if err != nil || len(sig) == 0 {
			continue
		}
		if sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(b.data)) != nil {
			continue
		}
		var p payload.Cosign
		if err := json.Unmarshal(b.data, &p); err != nil {
			continue
		}
		if got := p.Image.DigestStr(); got != ref.DigestStr() {
			mismatch = got
			continue
		}
		out = append(out, Signature{KeyID: keyID, Payload: b.data, Source: b.from})
	}
	if len(out) > 0 {
		return out, nil
	}
	if mismatch != "" {
		return nil, fmt.Errorf("%w: %s: signature by key %s is for %s", ErrDigestMismatch, ref, short(keyID), mismatch)
	}
	return nil, fmt.Errorf("%w: %s: none of %d signatures verifies with key %s", ErrSignature, ref, len(blobs), short(keyID))
}

// AttestationOption narrows VerifyAttestations.
type AttestationOption func(*attOptions)

type attOptions struct{ predicateType string }

// WithPredicateType keeps only attestations of this predicate type.
func WithPredicateType(t string) AttestationOption {
	return func(o *attOptions) { o.predicateType = t }
}

// VerifyAttestations finds the attestations of the image at ref (the
// sha256-<hex>.att image, then referrers) and returns those whose DSSE
// envelope verifies with pub and whose statement names ref's digest as a
// subject. Failures are ErrNoSignature, ErrSignature and ErrDigestMismatch as
// for VerifySignatures. Both signature schemes an RSA key can have made are
// accepted: in-toto's RSA-PSS (pkg/signing) and cosign's PKCS#1 v1.5.
func VerifyAttestations(ctx context.Context, ref name.Digest, pub crypto.PublicKey, aopts []AttestationOption, opts ...Option) ([]Attestation, error) {
	c, err := New(opts...)
	if err != nil {
		return nil, err
	}
	return c.VerifyAttestations(ctx, ref, pub, aopts...)
}

// VerifyAttestations is the package-level VerifyAttestations with the
// Client's options.
func (c *Client) VerifyAttestations(ctx context.Context, ref name.Digest, pub crypto.PublicKey, aopts ...AttestationOption) ([]Attestation, error) {
	var ao attOptions
	for _, f := range aopts {
		f(&ao)
	}
	ref, err := bindDigest(ref, c.o)
	if err != nil {
		return nil, err
	}
	verifiers, keyID, err := envelopeVerifiers(pub)
	if err != nil {
		return nil, err
	}
	blobs, err := c.candidates(ctx, ref, AttestationTag(ref), []string{ArtifactTypeAttestation, artifactTypeAttestationV0}, MediaTypeDSSE)
	if err != nil {
		return nil, err
	}
	var out []Attestation
	var mismatch string
	considered := 0
	for _, b := range blobs {
		if ao.predicateType != "" && b.annotations[AnnotationPredicate] != ao.predicateType {
			continue
		}
		considered++
		var env dsse.Envelope
		if err := json.Unmarshal(b.data, &env); err != nil {
			continue
		}
		if !verifyEnvelope(ctx, &env, verifiers) {
			continue
		}
		st, err := statementOf(&env)
		if err != nil {
			continue
		}
		if ao.predicateType != "" && st.PredicateType != ao.predicateType {
			continue
		}
		if !st.names(ref) {
			mismatch = st.subjectDigests()
			continue
		}
		pl, _ := env.DecodeB64Payload()
		out = append(out, Attestation{KeyID: keyID, PredicateType: st.PredicateType, Envelope: &env, Statement: pl, Source: b.from})
	}
	if len(out) > 0 {
		return out, nil
	}
	what := "attestation"
	if ao.predicateType != "" {
		what = "attestation of type " + ao.predicateType
	}
	if considered == 0 {
		return nil, fmt.Errorf("%w: %s has no %s (looked at %s and its referrers)", ErrNoSignature, ref, what, AttestationTag(ref).TagStr())
	}
	if mismatch != "" {
		return nil, fmt.Errorf("%w: %s: %s signed by key %s is about %s", ErrDigestMismatch, ref, what, short(keyID), mismatch)
	}
	return nil, fmt.Errorf("%w: %s: none of %d %ss verifies with key %s", ErrSignature, ref, considered, what, short(keyID))
}

func cosignVerifier(pub crypto.PublicKey) (string, signature.Verifier, error) {
	keyID, err := signing.KeyID(pub)
	if err != nil {
		return "", nil, err
	}
	sv, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return "", nil, fmt.Errorf("%w: key %s: %w", signing.ErrKey, short(keyID), err)
	}
	return keyID, sv, nil
}

func envelopeVerifiers(pub crypto.PublicKey) ([]signing.Verifier, string, error) {
	v, err := signing.NewVerifier(pub)
	if err != nil {
		return nil, "", err
	}
	keyID, _ := v.KeyID()
	vs := []signing.Verifier{v}
	if _, ok := pub.(*rsa.PublicKey); ok {
		_, sv, err := cosignVerifier(pub)
		if err != nil {
			return nil, "", err
		}
		vs = append(vs, &sigstoreVerifier{sv: sv, keyID: keyID, pub: pub})
	}
	return vs, keyID, nil
}

func verifyEnvelope(ctx context.Context, env *dsse.Envelope, vs []signing.Verifier) bool {
	for _, v := range vs {
		if _, err := signing.VerifyEnvelope(ctx, env, 1, v); err == nil {
			return true
		}
	}
	return false
}

// sigstoreVerifier adapts a sigstore verifier (cosign's scheme) to signing.Verifier.
type sigstoreVerifier struct {
	sv    signature.Verifier
	keyID string
	pub   crypto.PublicKey
}

func (s *sigstoreVerifier) Verify(_ context.Context, data, sig []byte) error {
	return s.sv.VerifySignature(bytes.NewReader(sig), bytes.NewReader(data))
}
func (s *sigstoreVerifier) KeyID() (string, error)   { return s.keyID, nil }
func (s *sigstoreVerifier) Public() crypto.PublicKey { return s.pub }

type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

func statementOf(env *dsse.Envelope) (*statement, error) {
	if env.PayloadType != signing.PayloadTypeInToto {
		return nil, fmt.Errorf("%w: envelope payload type %q, want %q", ErrArtifact, env.PayloadType, signing.PayloadTypeInToto)
	}
	pl, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload: %w", ErrArtifact, err)
	}
	var st statement
	if err := json.Unmarshal(pl, &st); err != nil {
		return nil, fmt.Errorf("%w: in-toto statement: %w", ErrArtifact, err)
	}
	if st.PredicateType == "" {
		return nil, fmt.Errorf("%w: in-toto statement has no predicateType", ErrArtifact)
	}
	return &st, nil
}

func (s *statement) names(ref name.Digest) bool {
	want := ref.DigestStr()[len("sha256:"):]
	for _, sub := range s.Subject {
		if sub.Digest["sha256"] == want {
			return true
		}
	}
	return false
}

func (s *statement) subjectDigests() string {
	var b bytes.Buffer
	for i, sub := range s.Subject {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("sha256:" + sub.Digest["sha256"])
	}
	return b.String()
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

package oci

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/stepseal/stepseal/pkg/signing"
)

// AnnotationReissuedFrom annotates the image subject of a re-issued
// statement (Reissue) with the DSSE envelope, as it was signed, that the
// statement was re-issued from: its original signature stays verifiable
// with the original signer's key (OriginalEnvelope).
const AnnotationReissuedFrom = "stepseal.dev/reissued-from"

// StatementKey is a key an attestation may be signed with and the name
// errors give it (its file).
type StatementKey struct {
	Name   string
	Public crypto.PublicKey
}

// VerifiedStatement is an in-toto statement whose DSSE signature verified
// with one of the given keys and one of whose subjects is the artifact.
type VerifiedStatement struct {
	// Source names the attestation (its file).
	Source string
	// KeyID is the in-toto key ID of the key that verified it, KeyName that
	// key's StatementKey.Name.
	KeyID, KeyName string
	PredicateType  string
	// Statement is the verified payload; Envelope the envelope as given.
	Statement []byte
	Envelope  *dsse.Envelope
	// Subject is the artifact digest one of its subjects names.
	Subject v1.Hash
}

// ArtifactDigests are the digests a statement about img may name as a
// subject: the manifest digest of img as given (not encrypted) and, for a
// file or directory artifact, the digest of its one layer — a file's sha256
// (what `stepseal run` records for an output and names in its provenance)
// or the sha256 of the directory's deterministic tar stream (WriteTar).
func ArtifactDigests(img v1.Image) ([]v1.Hash, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	out := []v1.Hash{d}
	kind, err := Kind(img)
	if err != nil {
		return nil, err
	}
	if kind == ArtifactTypeFile || kind == ArtifactTypeDir {
		m, err := img.Manifest()
		if err != nil {
			return nil, err
		}
		if len(m.Layers) != 1 {
			return nil, fmt.Errorf("%w: %s artifact with %d layers", ErrArtifact, kind, len(m.Layers))
		}
		out = append(out, m.Layers[0].Digest)
	}
	return out, nil
}

// VerifyStatement checks an attestation before it is attached to an
// artifact. The envelope's signature must verify with one of keys (for RSA
// in either scheme, in-toto's RSA-PSS or cosign's PKCS#1 v1.5), checked
// before anything of the payload is read; the payload must be an in-toto
// statement; and one of its subjects' sha256 must be one of digests (see
// ArtifactDigests). Refusals name source and the keys: ErrSignature (not
// signed by any of keys), ErrArtifact (not an in-toto statement),
// ErrDigestMismatch (about something else). A key that cannot verify at all
// is signing.ErrKey.
func VerifyStatement(ctx context.Context, source string, env *dsse.Envelope, keys []StatementKey, digests []v1.Hash) (*VerifiedStatement, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: attestation %s: no key to verify it with", ErrSignature, source)
	}
	if env == nil || len(env.Signatures) == 0 {
		return nil, fmt.Errorf("%w: attestation %s is not signed", ErrSignature, source)
	}
	var names []string
	vs := &VerifiedStatement{Source: source, Envelope: env}
	for _, k := range keys {
		verifiers, keyID, err := envelopeVerifiers(k.Public)
		if err != nil {
			return nil, fmt.Errorf("attestation key %s: %w", k.Name, err)
		}
		names = append(names, fmt.Sprintf("%s (%s)", k.Name, short(keyID)))
		if vs.KeyID == "" && verifyEnvelope(ctx, env, verifiers) {
			vs.KeyID, vs.KeyName = keyID, k.Name
		}
	}
	if vs.KeyID == "" {
		return nil, fmt.Errorf("%w: attestation %s: none of its %d signature(s) verifies with %s", ErrSignature, source, len(env.Signatures), strings.Join(names, ", "))
	}
	st, err := statementOf(env)
	if err != nil {
		return nil, fmt.Errorf("attestation %s: %w", source, err)
	}
	if !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") {
		return nil, fmt.Errorf("%w: attestation %s: _type %q is not an in-toto statement", ErrArtifact, source, st.Type)
	}
	vs.PredicateType = st.PredicateType
	vs.Statement, _ = env.DecodeB64Payload()
	for _, sub := range st.Subject {
		for _, d := range digests {
			if d.Algorithm == "sha256" && sub.Digest["sha256"] == d.Hex {
				vs.Subject = d
				return vs, nil
			}
		}
	}
	want := make([]string, len(digests))
	for i, d := range digests {
		want[i] = d.String()
	}
	about := st.subjectDigests()
	if about == "" {
		about = "no subject"
	}
	return nil, fmt.Errorf("%w: attestation %s (signed by %s) is about %s, not the artifact (%s)", ErrDigestMismatch, source, vs.KeyName, about, strings.Join(want, " or "))
}

// Reissue re-issues a verified statement for the image at ref, whose
// digest (an encrypted image's) the statement could not name: the same
// statement with the image as its first subject, signed by key in cosign's
// scheme (so `cosign verify-attestation` accepts RSA keys too). The image
// subject carries the envelope vs was verified from under
// AnnotationReissuedFrom, so what the original signer signed stays
// verifiable with the original key; the other subjects and fields are kept.
func Reissue(ctx context.Context, vs *VerifiedStatement, ref name.Digest, key crypto.Signer) (*dsse.Envelope, error) {
	orig, err := json.Marshal(vs.Envelope)
	if err != nil {
		return nil, err
	}
	return reissue(ctx, vs.Statement, ref, "", map[string]any{AnnotationReissuedFrom: json.RawMessage(orig)}, key)
}

// Move re-issues a statement about the image from for the image to (crypt
// rotate's new digest), signed by key: subjects naming from are replaced by
// one naming to, which keeps their annotations (an AnnotationReissuedFrom
// envelope included).
func Move(ctx context.Context, statement []byte, from, to name.Digest, key crypto.Signer) (*dsse.Envelope, error) {
	return reissue(ctx, statement, to, from.DigestStr()[len("sha256:"):], nil, key)
}

func reissue(ctx context.Context, statement []byte, ref name.Digest, dropHex string, ann map[string]any, key crypto.Signer) (*dsse.Envelope, error) {
	var st map[string]any
	dec := json.NewDecoder(bytes.NewReader(statement))
	dec.UseNumber() // numbers of the predicate kept as written
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: attestation statement: %w", ErrArtifact, err)
	}
	if t, _ := st["_type"].(string); !strings.HasPrefix(t, "https://in-toto.io/Statement/") {
		return nil, fmt.Errorf("%w: attestation is not an in-toto statement (_type %q)", ErrArtifact, t)
	}
	subject := map[string]any{"name": ref.Context().Name(), "digest": map[string]any{"sha256": ref.DigestStr()[len("sha256:"):]}}
	if ann == nil {
		ann = map[string]any{}
	}
	var rest []any
	old, _ := st["subject"].([]any)
	for _, s := range old {
		if m, ok := s.(map[string]any); ok && dropHex != "" {
			if dg, ok := m["digest"].(map[string]any); ok && dg["sha256"] == dropHex {
				if a, ok := m["annotations"].(map[string]any); ok {
					for k, v := range a {
						ann[k] = v
					}
				}
				continue
			}
		}
		rest = append(rest, s)
	}
	if len(ann) > 0 {
		subject["annotations"] = ann
	}
	st["subject"] = append([]any{subject}, rest...)
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	s, err := CosignSigner(key)
	if err != nil {
		return nil, err
	}
	return signing.SignEnvelope(ctx, signing.PayloadTypeInToto, payload, s)
}

// OriginalEnvelope returns the envelope a statement about ref was
// re-issued from (Reissue), to be verified with the original signer's key
// (signing.VerifyEnvelope, VerifyStatement). ErrNoSignature when the
// statement carries none for ref.
func OriginalEnvelope(statement []byte, ref name.Digest) (*dsse.Envelope, error) {
	var st struct {
		Subject []struct {
			Digest      map[string]string          `json:"digest"`
			Annotations map[string]json.RawMessage `json:"annotations"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(statement, &st); err != nil {
		return nil, fmt.Errorf("%w: in-toto statement: %w", ErrArtifact, err)
	}
	want := ref.DigestStr()[len("sha256:"):]
	for _, s := range st.Subject {
		raw, ok := s.Annotations[AnnotationReissuedFrom]
		if s.Digest["sha256"] != want || !ok {
			continue
		}
		var env dsse.Envelope
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("%w: %s annotation of %s: %w", ErrArtifact, AnnotationReissuedFrom, ref, err)
		}
		return &env, nil
	}
	return nil, fmt.Errorf("%w: statement about %s was not re-issued from another envelope", ErrNoSignature, ref)
}

package rekor

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/hashedrekord"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stepseal/stepseal/pkg/signing"
)

// MaxBundleSize bounds the bundles Verify reads.
const MaxBundleSize = 16 << 20

// Entry kind and version Rekor v2 logs.
const (
	kindHashedRekord    = "hashedrekord"
	versionHashedRekord = "0.0.2"
)

// VerifyOptions says what a bundle must prove. Key and Logs are required;
// so is Subject, unless AnySubjectUnsafe says the caller checks the
// statement's subject itself.
type VerifyOptions struct {
	// Key is the signer's public key (the bundle carries only its hint).
	Key crypto.PublicKey
	// Logs are the trusted Rekor logs; an entry of another log counts for
	// nothing.
	Logs []Log
	// Subject is the artifact digest the statement must name:
	// "sha256:<hex>".
	Subject string
	// AnySubjectUnsafe skips the subject check.
	AnySubjectUnsafe bool
}

// Verified is what a verified bundle proves.
type Verified struct {
	// Envelope is the verified DSSE envelope (its one signature).
	Envelope *dsse.Envelope
	// PredicateType is the statement's predicate type.
	PredicateType string
	// Log is the log whose entry proved it, LogIndex the entry's index,
	// TreeSize the size of the checkpoint that includes it.
	Log      Log
	LogIndex int64
	TreeSize uint64
}

// Verify checks a Sigstore bundle of a DSSE attestation logged in Rekor v2,
// offline, in these steps (each failure a typed error of this package):
//
//  1. parse: a bundle v0.3 (sigstore-go's parser and checks), DSSE content,
//     a public-key hint, one signature (ErrBundle);
//  2. signature: the envelope's signature verifies with o.Key over the
//     DSSE PAE (ErrSignature, naming the key);
//  3. statement: an in-toto statement naming o.Subject (ErrSubject);
//  4. entries: at least one transparency log entry (ErrNoEntry), of a
//     trusted log (ErrUnknownLog, naming the log IDs), hashedrekord v0.0.2
//     (ErrBundle);
//  5. checkpoint: signed by that log's key under its origin
//     (ErrCheckpoint, naming the log);
//  6. leaf: the hashedrekord entry rebuilt from the envelope (digest of the
//     PAE, signature, key) is the logged body (ErrEntry);
//  7. inclusion: the proof places that leaf at the entry's index in the
//     checkpoint's tree (ErrInclusion, naming index and tree size).
//
// Every trusted entry must pass; entries of untrusted logs are ignored, as
// sigstore-go does.
func Verify(data []byte, o VerifyOptions) (*Verified, error) {
	if o.Key == nil || len(o.Logs) == 0 {
		return nil, errors.New("rekor.Verify: a key and at least one trusted log are required")
	}
	if o.Subject == "" && !o.AnySubjectUnsafe {
		return nil, errors.New("rekor.Verify: the expected subject is required")
	}
	// 1. parse
	env, sig, tles, err := parseBundle(data)
	if err != nil {
		return nil, err
	}
	// 2. signature
	pae := dsse.PAE(env.PayloadType, mustDecode(env.Payload))
	v, err := signing.NewVerifier(o.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyNotLoggable, err)
	}
	if err := v.Verify(context.Background(), pae, sig); err != nil {
		return nil, fmt.Errorf("%w: the envelope's signature does not verify with key %s over its payload", ErrSignature, keyName(o.Key))
	}
	// 3. statement
	pt, err := checkStatement(env, o)
	if err != nil {
		return nil, err
	}
	// 4.–7. entries
	details, hash, err := KeyAlgorithm(o.Key)
	if err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(pae)
	leaf, err := leafHash(h.Sum(nil), sig, o.Key, details)
	if err != nil {
		return nil, err
	}
	if len(tles) == 0 {
		return nil, fmt.Errorf("%w: the bundle has no Rekor entry", ErrNoEntry)
	}
	var out *Verified
	var unknown []string
	for _, tle := range tles {
		l, ok := trustedLog(o.Logs, tle.GetLogId().GetKeyId())
		if !ok {
			unknown = append(unknown, hex.EncodeToString(tle.GetLogId().GetKeyId()))
			continue
		}
		size, err := verifyEntry(tle, l, leaf)
		if err != nil {
			return nil, err
		}
		out = &Verified{Envelope: env, PredicateType: pt, Log: l, LogIndex: tle.GetLogIndex(), TreeSize: size}
	}
	if out == nil {
		return nil, fmt.Errorf("%w: log ID(s) %s are none of the %d trusted", ErrUnknownLog, strings.Join(unknown, ", "), len(o.Logs))
	}
	return out, nil
}

// parseBundle is step 1: the envelope (with its one signature), the raw
// signature and the log entries.
func parseBundle(data []byte) (*dsse.Envelope, []byte, []*protorekor.TransparencyLogEntry, error) {
	if len(data) > MaxBundleSize {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBundle, len(data), MaxBundleSize)
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	if b.GetMediaType() != MediaTypeBundle {
		return nil, nil, nil, fmt.Errorf("%w: media type %q, want %q", ErrBundle, b.GetMediaType(), MediaTypeBundle)
	}
	de := b.GetDsseEnvelope()
	if de == nil {
		return nil, nil, nil, fmt.Errorf("%w: content is not a DSSE envelope", ErrBundle)
	}
	if b.GetVerificationMaterial().GetPublicKey() == nil {
		return nil, nil, nil, fmt.Errorf("%w: verification material is not a public key hint", ErrBundle)
	}
	if len(de.GetSignatures()) != 1 || len(de.GetSignatures()[0].GetSig()) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: the envelope has %d signatures, want 1", ErrBundle, len(de.GetSignatures()))
	}
	s := de.GetSignatures()[0]
	env := &dsse.Envelope{
		PayloadType: de.GetPayloadType(),
		Payload:     base64.StdEncoding.EncodeToString(de.GetPayload()),
		Signatures:  []dsse.Signature{{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())}},
	}
	return env, s.GetSig(), b.GetVerificationMaterial().GetTlogEntries(), nil
}

func mustDecode(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

// checkStatement is step 3: an in-toto statement naming o.Subject; it
// returns the predicate type.
func checkStatement(env *dsse.Envelope, o VerifyOptions) (string, error) {
	if env.PayloadType != signing.PayloadTypeInToto {
		return "", fmt.Errorf("%w: payload type %q is not an in-toto statement", ErrBundle, env.PayloadType)
	}
	var st struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(mustDecode(env.Payload), &st); err != nil || st.PredicateType == "" || len(st.Subject) == 0 {
		return "", fmt.Errorf("%w: the payload is not an in-toto statement with subjects", ErrBundle)
	}
	if o.AnySubjectUnsafe {
		return st.PredicateType, nil
	}
	alg, want, ok := strings.Cut(o.Subject, ":")
	if !ok {
		return "", fmt.Errorf("expected subject %q is not algorithm:hex", o.Subject)
	}
	for _, s := range st.Subject {
		if got, ok := s.Digest[alg]; ok && strings.EqualFold(got, want) {
			return st.PredicateType, nil
		}
	}
	return "", fmt.Errorf("%w: the statement (%s) does not name %s among its %d subjects", ErrSubject, st.PredicateType, o.Subject, len(st.Subject))
}

// leafHash is the Merkle leaf hash of the hashedrekord v0.0.2 entry of a
// signature sig by pub over a message of digest d, as Rekor v2 builds it
// (rekor-tiles' own ToEntryHash).
func leafHash(d, sig []byte, pub crypto.PublicKey, details protocommon.PublicKeyDetails) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h, err := hashedrekord.ToEntryHash(d, hashedSignature(sig, der, details))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyNotLoggable, err)
	}
	return h, nil
}

func hashedSignature(sig, der []byte, details protocommon.PublicKeyDetails) *pb.Signature {
	return &pb.Signature{
		Content: sig,
		Verifier: &pb.Verifier{
			Verifier:   &pb.Verifier_PublicKey{PublicKey: &pb.PublicKey{RawBytes: der}},
			KeyDetails: details,
		},
	}
}

// trustedLog finds the log of ID id.
func trustedLog(logs []Log, id []byte) (Log, bool) {
	for _, l := range logs {
		if lid, err := l.ID(); err == nil && len(id) > 0 && bytes.Equal(lid, id) {
			return l, true
		}
	}
	return Log{}, false
}

// verifyEntry is steps 4–7 for one entry of log l; it returns the size of
// the tree the entry is proven in.
func verifyEntry(tle *protorekor.TransparencyLogEntry, l Log, leaf []byte) (uint64, error) {
	kv := tle.GetKindVersion()
	if kv.GetKind() != kindHashedRekord || kv.GetVersion() != versionHashedRekord {
		return 0, fmt.Errorf("%w: entry %d of %s is %s %s, want %s %s", ErrBundle, tle.GetLogIndex(), l.Origin, kv.GetKind(), kv.GetVersion(), kindHashedRekord, versionHashedRekord)
	}
	ip := tle.GetInclusionProof()
	if ip == nil || ip.GetCheckpoint().GetEnvelope() == "" {
		return 0, fmt.Errorf("%w: entry %d of %s has no inclusion proof and checkpoint", ErrBundle, tle.GetLogIndex(), l.Origin)
	}
	// 5. checkpoint
	nv, err := l.noteVerifier()
	if err != nil {
		return 0, err
	}
	cp, _, _, err := flog.ParseCheckpoint([]byte(ip.GetCheckpoint().GetEnvelope()), l.Origin, nv)
	if err != nil {
		return 0, fmt.Errorf("%w: entry %d: the checkpoint is not signed by log %s (key %08x): %v", ErrCheckpoint, tle.GetLogIndex(), l.Origin, nv.KeyHash(), err)
	}
	// 6. leaf
	if len(tle.GetCanonicalizedBody()) == 0 {
		return 0, fmt.Errorf("%w: entry %d of %s has no body", ErrBundle, tle.GetLogIndex(), l.Origin)
	}
	if !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(tle.GetCanonicalizedBody()), leaf) {
		return 0, fmt.Errorf("%w: entry %d of %s is not the hashedrekord of this envelope's signature and key", ErrEntry, tle.GetLogIndex(), l.Origin)
	}
	// 7. inclusion
	if tle.GetLogIndex() < 0 || ip.GetLogIndex() != tle.GetLogIndex() || ip.GetTreeSize() < 0 || uint64(ip.GetTreeSize()) != cp.Size || !bytes.Equal(ip.GetRootHash(), cp.Hash) {
		return 0, fmt.Errorf("%w: entry %d of %s: the proof (index %d, tree %d) is not for the checkpoint's tree (%d)", ErrInclusion, tle.GetLogIndex(), l.Origin, ip.GetLogIndex(), ip.GetTreeSize(), cp.Size)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(tle.GetLogIndex()), cp.Size, leaf, ip.GetHashes(), cp.Hash); err != nil {
		return 0, fmt.Errorf("%w: entry %d is not proven in the tree of size %d of %s (root %x): the proof's %d hashes lead to another root", ErrInclusion, tle.GetLogIndex(), cp.Size, l.Origin, cp.Hash[:8], len(ip.GetHashes()))
	}
	return cp.Size, nil
}

// VerifyAny verifies bundles (those attached to an image, say) and returns
// the first that passes Verify; none is every refusal joined, each naming
// its bundle's position, or ErrNoBundle when there is none.
func VerifyAny(bundles [][]byte, o VerifyOptions) (*Verified, error) {
	if len(bundles) == 0 {
		return nil, fmt.Errorf("%w to verify", ErrNoBundle)
	}
	var errs []error
	for i, b := range bundles {
		v, err := Verify(b, o)
		if err == nil {
			return v, nil
		}
		errs = append(errs, fmt.Errorf("bundle %d of %d: %w", i+1, len(bundles), err))
	}
	return nil, errors.Join(errs...)
}

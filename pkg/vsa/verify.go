package vsa

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	vsapb "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Errors Verify returns, each matching its reason in pkg/reject (and that
// reason's root, reject.ErrRefused): callers branch with errors.Is.
var (
	// ErrMalformed: not a DSSE envelope of an in-toto v1 statement with a
	// VSA predicate that parses (reject.ErrMalformed).
	ErrMalformed = reject.Sentinel(reject.ErrMalformed, "malformed VSA")
	// ErrPayloadType: the envelope's payload type is not in-toto's
	// (reject.ErrMalformed).
	ErrPayloadType = reject.Sentinel(reject.ErrMalformed, "VSA payload type is not in-toto")
	// ErrSignature: no signature verifies with the configured verifier key
	// (a tenant's key, a forged or damaged signature; reject.ErrSignature).
	ErrSignature = reject.Sentinel(reject.ErrSignature, "VSA not signed by the verifier key")
	// ErrPredicateType: the statement is not a VSA v1 (reject.ErrMismatch).
	ErrPredicateType = reject.Sentinel(reject.ErrMismatch, "not a VSA v1")
	// ErrVerifier: verifier.id is not the configured verifier's: the
	// (key, verifier) pair is not one the consumer accepts
	// (reject.ErrUnauthorized).
	ErrVerifier = reject.Sentinel(reject.ErrUnauthorized, "VSA from another verifier")
	// ErrSubject: no subject has the digest of the artifact being checked
	// (reject.ErrMismatch).
	ErrSubject = reject.Sentinel(reject.ErrMismatch, "VSA is about another artifact")
	// ErrResourceURI: resourceUri is not the expected one (reject.ErrMismatch).
	ErrResourceURI = reject.Sentinel(reject.ErrMismatch, "VSA is about another resource")
	// ErrFailed: the verifier recorded that verification failed
	// (reject.ErrPolicy).
	ErrFailed = reject.Sentinel(reject.ErrPolicy, "VSA records a failed verification")
	// ErrLevel: a verified level the consumer requires is absent
	// (reject.ErrPolicy).
	ErrLevel = reject.Sentinel(reject.ErrPolicy, "VSA lacks a required verified level")
	// ErrPolicyDigest: the VSA was made against another policy than the
	// layout that governs the artifact now (an older layout: rollback or
	// substitution; reject.ErrMismatch).
	ErrPolicyDigest = reject.Sentinel(reject.ErrMismatch, "VSA verified against another layout")
	// ErrTooOld: timeVerified is older than the maximum age
	// (reject.ErrExpired).
	ErrTooOld = reject.Sentinel(reject.ErrExpired, "VSA too old")
	// ErrFuture: timeVerified is in the future beyond the allowed clock
	// skew: outside its validity window too (reject.ErrExpired).
	ErrFuture = reject.Sentinel(reject.ErrExpired, "VSA verified in the future")
)

// Defaults of Expect.
const (
	DefaultMaxAge = 24 * time.Hour
	DefaultSkew   = 5 * time.Minute
)

// Expect is what the consumer requires of a VSA. Key, VerifierID,
// SubjectDigest, ResourceURI and PolicyDigest are required: a VSA cannot be
// verified without saying whose, about what, and against which policy.
type Expect struct {
	// Key is the configured verifier key; only its signature counts.
	Key signing.Verifier
	// VerifierID is the verifier.id the key is paired with.
	VerifierID string
	// SubjectDigest is the artifact's digest, "sha256:<hex>".
	SubjectDigest string
	// ResourceURI is the resourceUri expected (ResourceURI for an image).
	ResourceURI string
	// PolicyDigest is the digest of the layout that governs the artifact
	// now, "sha256:<hex>".
	PolicyDigest string
	// WithoutPolicyDigestUnsafe accepts a VSA made against any policy: it
	// then does not say the artifact meets the current layout.
	WithoutPolicyDigestUnsafe bool
	// PolicyURI, when set, must equal policy.uri.
	PolicyURI string
	// Levels must all be among verifiedLevels.
	Levels []string
	// MaxAge bounds the age of timeVerified (DefaultMaxAge when zero);
	// Skew is how far in the future it may be (DefaultSkew when zero).
	MaxAge, Skew time.Duration
	// Now is the time of the check; zero means time.Now().
	Now time.Time
	// Revocations, when set, looks up the functionary keys the policy the
	// VSA names (policy.uri) revokes now. Every input must then name its
	// signers (ErrNoInputSigners otherwise), the policy must be a TUF
	// layout (ErrPolicyURI) and no input may be signed by a revoked key
	// (*RevokedInputError). Nil: inputs are not checked.
	Revocations RevocationLookup
}

// Verified is a VSA that passed Verify.
type Verified struct {
	Statement *intoto.Statement
	Predicate *vsapb.VerificationSummary
	// KeyIDs are the in-toto key IDs whose signatures verified.
	KeyIDs []string
	// Inputs are inputAttestations with their signers (ExtInputSigners).
	Inputs []Input
}

// Parse decodes a VSA without verifying anything but its shape: a DSSE
// envelope (strict, signing.ParseEnvelope) of an in-toto v1 statement
// whose predicate is a VSA v1. Errors are ErrMalformed, ErrPayloadType or
// ErrPredicateType. source names the bytes in errors.
func Parse(data []byte, source string) (*Verified, error) {
	env, err := signing.ParseEnvelope(data, source)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if env.PayloadType != signing.PayloadTypeInToto {
		return nil, fmt.Errorf("%s: %w: %q", source, ErrPayloadType, env.PayloadType)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: payload: %w", source, ErrMalformed, err)
	}
	return parseStatement(payload, source)
}

func parseStatement(payload []byte, source string) (*Verified, error) {
	st := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, st); err != nil {
		return nil, fmt.Errorf("%s: %w: statement: %w", source, ErrMalformed, err)
	}
	if st.Type != intoto.StatementTypeUri {
		return nil, fmt.Errorf("%s: %w: statement type %q, want %s", source, ErrMalformed, st.Type, intoto.StatementTypeUri)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", source, ErrMalformed, err)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("%s: %w: predicate type %q", source, ErrPredicateType, st.PredicateType)
	}
	pred := proto.Clone(st.Predicate).(*structpb.Struct)
	signers, err := takeSigners(pred)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: predicate: %w", source, ErrMalformed, err)
	}
	pj, err := protojson.Marshal(pred)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: predicate: %w", source, ErrMalformed, err)
	}
	p := &vsapb.VerificationSummary{}
	if err := protojson.Unmarshal(pj, p); err != nil {
		return nil, fmt.Errorf("%s: %w: predicate: %w", source, ErrMalformed, err)
	}
	if p.GetVerifier().GetId() == "" || p.GetTimeVerified() == nil || p.GetResourceUri() == "" || p.GetPolicy().GetUri() == "" || p.GetVerificationResult() == "" {
		return nil, fmt.Errorf("%s: %w: a required field (verifier.id, timeVerified, resourceUri, policy.uri, verificationResult) is missing", source, ErrMalformed)
	}
	if err := p.GetTimeVerified().CheckValid(); err != nil {
		return nil, fmt.Errorf("%s: %w: timeVerified: %w", source, ErrMalformed, err)
	}
	v := &Verified{Statement: st, Predicate: p}
	for i, in := range p.GetInputAttestations() {
		v.Inputs = append(v.Inputs, Input{URI: in.GetUri(), Digest: in.GetDigest(), Signers: signers[i]})
	}
	return v, nil
}

// Verify checks the VSA data against exp, in the order of the SLSA
// consumer procedure, and fails closed at the first check that fails:
//
//  1. parse the envelope strictly (ErrMalformed);
//  2. its signature verifies with exp.Key (ErrSignature) — before anything
//     the VSA says is believed;
//  3. the payload type is in-toto's (ErrPayloadType) and the statement a
//     VSA v1 (ErrPredicateType, ErrMalformed);
//  4. verifier.id is exp.VerifierID (ErrVerifier);
//  5. a subject has exp.SubjectDigest (ErrSubject);
//  6. resourceUri is exp.ResourceURI (ErrResourceURI);
//  7. verificationResult is PASSED (ErrFailed);
//  8. verifiedLevels hold exp.Levels (ErrLevel);
//  9. with exp.Revocations, no input was signed by a key the policy the
//     VSA names revokes now (*RevokedInputError; ErrNoInputSigners,
//     ErrPolicyURI when that cannot be shown) — before the policy digest,
//     which a revocation also changes, so that the refusal names the key;
//  10. policy.digest is exp.PolicyDigest, the current layout's, and
//     policy.uri exp.PolicyURI when given (ErrPolicyDigest);
//  11. timeVerified is not older than exp.MaxAge (ErrTooOld) nor later than
//     now plus exp.Skew (ErrFuture).
//
// An Expect missing a required value is an error of no reason: the
// caller's omission, not a verdict.
func Verify(ctx context.Context, data []byte, exp Expect) (*Verified, error) {
	if err := exp.check(); err != nil {
		return nil, err
	}
	source := "VSA"
	// 1.
	env, err := signing.ParseEnvelope(data, source)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// 2.
	keyID, _ := exp.Key.KeyID()
	ids, err := signing.VerifyEnvelope(ctx, env, 1, exp.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: no signature by verifier key %.16s: %w", ErrSignature, keyID, err)
	}
	// 3.
	if env.PayloadType != signing.PayloadTypeInToto {
		return nil, fmt.Errorf("%s: %w: %q", source, ErrPayloadType, env.PayloadType)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: payload: %w", source, ErrMalformed, err)
	}
	v, err := parseStatement(payload, source)
	if err != nil {
		return nil, err
	}
	v.KeyIDs = ids
	p := v.Predicate
	// 4.
	if got := p.GetVerifier().GetId(); got != exp.VerifierID {
		return nil, fmt.Errorf("%w: verifier.id %q, want %q", ErrVerifier, got, exp.VerifierID)
	}
	// 5.
	alg, hex, _ := strings.Cut(exp.SubjectDigest, ":")
	if !slices.ContainsFunc(v.Statement.Subject, func(s *intoto.ResourceDescriptor) bool { return s.GetDigest()[alg] == hex }) {
		var got []string
		for _, s := range v.Statement.Subject {
			got = append(got, s.GetName()+"@"+alg+":"+s.GetDigest()[alg])
		}
		return nil, fmt.Errorf("%w: no subject has digest %s (subjects: %s)", ErrSubject, exp.SubjectDigest, strings.Join(got, ", "))
	}
	// 6.
	if got := p.GetResourceUri(); got != exp.ResourceURI {
		return nil, fmt.Errorf("%w: resourceUri %q, want %q", ErrResourceURI, got, exp.ResourceURI)
	}
	// 7.
	if got := p.GetVerificationResult(); got != Passed {
		return nil, fmt.Errorf("%w: verificationResult %q by %s against %s", ErrFailed, got, p.GetVerifier().GetId(), p.GetPolicy().GetUri())
	}
	// 8.
	for _, l := range exp.Levels {
		if !slices.Contains(p.GetVerifiedLevels(), l) {
			return nil, fmt.Errorf("%w: %s not among %v", ErrLevel, l, p.GetVerifiedLevels())
		}
	}
	// 9.
	if exp.Revocations != nil {
		if err := checkRevocations(ctx, v, exp.Revocations); err != nil {
			return nil, err
		}
	}
	// 10.
	if !exp.WithoutPolicyDigestUnsafe {
		alg, hex, _ := strings.Cut(exp.PolicyDigest, ":")
		if got := p.GetPolicy().GetDigest()[alg]; got != hex {
			return nil, fmt.Errorf("%w: policy %s has %s digest %q, the current layout's is %s", ErrPolicyDigest, p.GetPolicy().GetUri(), alg, got, exp.PolicyDigest)
		}
	}
	if exp.PolicyURI != "" && p.GetPolicy().GetUri() != exp.PolicyURI {
		return nil, fmt.Errorf("%w: policy.uri %q, want %q", ErrPolicyDigest, p.GetPolicy().GetUri(), exp.PolicyURI)
	}
	// 11.
	now := exp.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxAge, skew := exp.MaxAge, exp.Skew
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if skew <= 0 {
		skew = DefaultSkew
	}
	at := p.GetTimeVerified().AsTime()
	if at.After(now.Add(skew)) {
		return nil, fmt.Errorf("%w: timeVerified %s is after now (%s) plus %v", ErrFuture, at.Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	if age := now.Sub(at); age > maxAge {
		return nil, fmt.Errorf("%w: timeVerified %s is %v old, more than %v", ErrTooOld, at.Format(time.RFC3339), age.Truncate(time.Second), maxAge)
	}
	return v, nil
}

func (e Expect) check() error {
	var missing []string
	if e.Key == nil {
		missing = append(missing, "verifier key")
	}
	if e.VerifierID == "" {
		missing = append(missing, "verifier ID")
	}
	if !digestOK(e.SubjectDigest) {
		missing = append(missing, "subject digest (sha256:<hex>)")
	}
	if e.ResourceURI == "" {
		missing = append(missing, "resource URI")
	}
	if !e.WithoutPolicyDigestUnsafe && !digestOK(e.PolicyDigest) {
		missing = append(missing, "policy (layout) digest (sha256:<hex>)")
	}
	if len(missing) > 0 {
		return errors.New("vsa: cannot verify without a " + strings.Join(missing, ", a "))
	}
	return nil
}

func digestOK(d string) bool {
	alg, hex, ok := strings.Cut(d, ":")
	return ok && alg == "sha256" && len(hex) == 64 && strings.Trim(hex, "0123456789abcdef") == ""
}

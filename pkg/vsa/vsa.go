package vsa

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	vsapb "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stepseal/stepseal/pkg/signing"
)

// PredicateType is the predicate type of a SLSA VSA v1.
const PredicateType = "https://slsa.dev/verification_summary/v1"

// Verification results.
const (
	Passed = "PASSED"
	Failed = "FAILED"
)

// SLSAVersion is the SLSA version stepseal's VSAs are made under.
const SLSAVersion = "1.0"

// LevelLayout is the verified level of stepseal's VSAs: the run's links
// satisfied the in-toto layout named as the policy. It is a custom level
// (not starting with "SLSA_", as the spec requires of those): stepseal
// claims no SLSA build level. SLSA_BUILD_LEVEL_UNEVALUATED is not used
// because slsa-verifier v2.7.1's verify-vsa refuses every VSA carrying it
// (it parses every "SLSA_" level as SLSA_<track>_LEVEL_<number>).
const LevelLayout = "STEPSEAL_IN_TOTO_LAYOUT"

// StoreURIScheme prefixes the uri of an input attestation read from
// stepseal's store: "stepseal-store:<entry name>", followed by
// "#log-index=<n>" when the transparency log holds it at index n.
const StoreURIScheme = "stepseal-store:"

// InputURI is the uri of the input attestation stored under name, with its
// log index when known (index < 0: none).
func InputURI(name string, index int64) string {
	if index < 0 {
		return StoreURIScheme + name
	}
	return StoreURIScheme + name + "#log-index=" + strconv.FormatInt(index, 10)
}

// ResourceURI is the resourceUri stepseal gives an OCI image: its
// repository, "oci://<registry>/<repository>" (no tag, no digest: the
// digest is the subject's).
func ResourceURI(registry, repository string) string {
	return "oci://" + registry + "/" + repository
}

// ExtInputSigners is the name of the extension field (a URI, as the VSA
// spec asks of producers' fields) that stepseal adds to each entry of
// inputAttestations: the in-toto key IDs of the keys that signed that
// input, so that a consumer can refuse a VSA one of whose inputs was
// signed by a key revoked since (Expect.Revocations).
const ExtInputSigners = "https://stepseal.dev/vsa/input-signers/v1"

// Input is one attestation the verifier read.
type Input struct {
	URI    string
	Digest map[string]string
	// Signers are the in-toto key IDs of the keys that signed it
	// (SignerKeyIDs), carried as ExtInputSigners; nil in a VSA made before
	// the field existed.
	Signers []string
}

// PolicyURI is the policy uri of a VSA made against the layout at TUF
// target path, vouched for by role at version: "tuf:<path>?role=<role>&version=<n>".
// ParsePolicyURI reads it back.
func PolicyURI(path, role string, version int64) string {
	return "tuf:" + path + "?" + url.Values{"role": {role}, "version": {strconv.FormatInt(version, 10)}}.Encode()
}

// Summary is what a VSA says.
type Summary struct {
	// VerifierID is verifier.id, the verifier's URI.
	VerifierID string
	// Time is timeVerified.
	Time time.Time
	// ResourceURI is where the consumer fetches the subjects from.
	ResourceURI string
	// Subjects name the artifacts verified, by digest.
	Subjects []*intoto.ResourceDescriptor
	// PolicyURI and PolicyDigest identify the policy verified against
	// (stepseal: the layout's TUF path and version, and its digest).
	PolicyURI    string
	PolicyDigest map[string]string
	// Inputs are every attestation read (links, provenance).
	Inputs []Input
	// Result is Passed or Failed.
	Result string
	// Levels are verifiedLevels; default LevelLayout.
	Levels []string
}

// Statement builds the in-toto v1 statement of s. The predicate is
// marshalled with protojson, so its field names are the spec's camelCase
// ones (verifier.id, timeVerified, resourceUri, ...).
func Statement(s Summary) (*intoto.Statement, error) {
	switch {
	case s.VerifierID == "":
		return nil, fmt.Errorf("vsa: no verifier ID")
	case s.ResourceURI == "":
		return nil, fmt.Errorf("vsa: no resource URI")
	case s.PolicyURI == "" || len(s.PolicyDigest) == 0:
		return nil, fmt.Errorf("vsa: the policy needs a uri and a digest")
	case len(s.Subjects) == 0:
		return nil, fmt.Errorf("vsa: no subject")
	case s.Result != Passed && s.Result != Failed:
		return nil, fmt.Errorf("vsa: result %q is neither %s nor %s", s.Result, Passed, Failed)
	case s.Time.IsZero():
		return nil, fmt.Errorf("vsa: no verification time")
	}
	levels := s.Levels
	if len(levels) == 0 {
		levels = []string{LevelLayout}
	}
	inputs := slices.Clone(s.Inputs)
	sort.Slice(inputs, func(i, j int) bool { return inputs[i].URI < inputs[j].URI })
	p := &vsapb.VerificationSummary{
		Verifier:           &vsapb.VerificationSummary_Verifier{Id: s.VerifierID},
		TimeVerified:       timestamppb.New(s.Time.UTC().Truncate(time.Second)),
		ResourceUri:        s.ResourceURI,
		Policy:             &vsapb.VerificationSummary_Policy{Uri: s.PolicyURI, Digest: s.PolicyDigest},
		VerificationResult: s.Result,
		VerifiedLevels:     levels,
		SlsaVersion:        SLSAVersion,
	}
	for _, in := range inputs {
		p.InputAttestations = append(p.InputAttestations, &vsapb.VerificationSummary_InputAttestation{Uri: in.URI, Digest: in.Digest})
	}
	pj, err := protojson.Marshal(p)
	if err != nil {
		return nil, err
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(pj, pred); err != nil {
		return nil, err
	}
	// The signers go into each input's object as an extension field, which
	// the in-toto Go type has no place for.
	list := pred.GetFields()["inputAttestations"].GetListValue().GetValues()
	for i, in := range inputs {
		if len(in.Signers) == 0 {
			continue
		}
		if err := checkSigners(in.Signers); err != nil {
			return nil, fmt.Errorf("vsa: input %s: %w", in.URI, err)
		}
		ids := make([]any, len(in.Signers))
		for j, id := range in.Signers {
			ids[j] = id
		}
		v, err := structpb.NewList(ids)
		if err != nil {
			return nil, err
		}
		list[i].GetStructValue().Fields[ExtInputSigners] = structpb.NewListValue(v)
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, Subject: s.Subjects, PredicateType: PredicateType, Predicate: pred}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("vsa: %w", err)
	}
	return st, nil
}

// Sign returns the VSA of s as a DSSE envelope signed by signer, and its
// JSON (the bytes to store and attach).
func Sign(ctx context.Context, s Summary, signer signing.Signer) (*dsse.Envelope, []byte, error) {
	st, err := Statement(s)
	if err != nil {
		return nil, nil, err
	}
	payload, err := protojson.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	var compact json.RawMessage = payload
	b, err := json.Marshal(compact)
	if err != nil {
		return nil, nil, err
	}
	env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, b, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the VSA: %w", err)
	}
	data, err := json.Marshal(env)
	if err != nil {
		return nil, nil, err
	}
	return env, data, nil
}

// ImageSubject is the subject of an image "<repository>@sha256:<hex>".
func ImageSubject(image string) (*intoto.ResourceDescriptor, error) {
	repo, dig, ok := strings.Cut(image, "@")
	alg, hex, ok2 := strings.Cut(dig, ":")
	if !ok || !ok2 || repo == "" || alg != "sha256" || hex == "" {
		return nil, fmt.Errorf("vsa: %q is not an image by sha256 digest", image)
	}
	return &intoto.ResourceDescriptor{Name: image, Digest: map[string]string{"sha256": hex}}, nil
}

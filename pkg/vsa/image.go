package vsa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stepseal/stepseal/pkg/oci"
)

// MaxCandidates caps how many VSAs attached to one image VerifyImage
// examines: anyone who can push to the repository can attach more.
const MaxCandidates = 16

// FromImage is where VerifyImage found the VSA it accepted.
type FromImage struct {
	*Verified
	// Source is the tag or referrer it was read from.
	Source string
}

// VerifyImage finds the VSAs attached to the image ref (cosign's .att tag
// and OCI 1.1 referrers, predicate type PredicateType) signed by exp.Key
// and returns the first that Verify accepts for ref: exp.SubjectDigest is
// ref's digest, and exp.ResourceURI defaults to ResourceURI of ref's
// repository. None attached by that key is oci.ErrNoSignature
// (reject.ErrMissing); attached but none signed by it, oci.ErrSignature;
// signed but refused, the first refusal (Verify's errors). A registry that
// cannot be read is reject.ErrUnavailable (pkg/oci's errors).
func VerifyImage(ctx context.Context, c *oci.Client, ref name.Digest, exp Expect) (*FromImage, error) {
	exp.SubjectDigest = ref.DigestStr()
	if exp.ResourceURI == "" {
		exp.ResourceURI = ResourceURI(ref.Context().RegistryStr(), ref.Context().RepositoryStr())
	}
	if exp.Key == nil {
		return nil, exp.check()
	}
	atts, err := c.VerifyAttestations(ctx, ref, exp.Key.Public(), oci.WithPredicateType(PredicateType))
	if err != nil {
		return nil, fmt.Errorf("VSA of %s: %w", ref, err)
	}
	var errs []error
	for i, a := range atts {
		if i == MaxCandidates {
			break
		}
		data, err := json.Marshal(a.Envelope)
		if err != nil {
			return nil, err
		}
		v, err := Verify(ctx, data, exp)
		if err == nil {
			return &FromImage{Verified: v, Source: a.Source}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.Source, err))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("VSA of %s: %w: no attestation examined", ref, ErrMalformed)
	}
	// The first refusal decides the reason; the others are in the message.
	if len(errs) == 1 {
		return nil, fmt.Errorf("VSA of %s: %w", ref, errs[0])
	}
	return nil, fmt.Errorf("VSA of %s: %w (and %v)", ref, errs[0], errors.Join(errs[1:]...))
}

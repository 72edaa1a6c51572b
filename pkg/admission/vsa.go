package admission

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// RegistryVSA is the VSAChecker on pkg/vsa: among the VSAs attached to the
// image (cosign's .att tag and OCI 1.1 referrers) only those the rule's
// verifier key signed count, and vsa.VerifyImage takes the first that
// names the rule's verifier identity, this digest as a subject and the
// image's repository as resourceUri, says PASSED and is not older than
// the rule's maxAge — and, for a rule naming a layout, is bound to the
// digest that layout has now (LayoutDigest: the TUF target's) — and, with
// Revocations, none of whose inputs was signed by a key the layout it was
// verified against revokes now (vsa.RevokedInputError).
type RegistryVSA struct {
	Registry *oci.Client
	// LayoutDigest returns the current "sha256:<hex>" of the layout name
	// (a TUF target); nil makes a rule naming a layout uncheckable.
	LayoutDigest func(ctx context.Context, name string) (string, error)
	// Revocations looks up the keys the layout a VSA names revokes now
	// (trustroot.Root.Revocations). With it, every VSA rule
	// refuses a VSA an input of which was signed by a revoked key, and one
	// that does not name its inputs' signers (vsa.ErrNoInputSigners). Nil
	// (no trust source: no revocation records to look in): not checked.
	Revocations vsa.RevocationLookup
}

// Check implements VSAChecker.
func (r RegistryVSA) Check(ctx context.Context, image name.Digest, rule *Rule) error {
	if rule.VSA.Key == nil {
		return fmt.Errorf("%w: rule %s requires a VSA and names no verifier key (vsa.key)", errNoChecker, rule.Name)
	}
	key, err := signing.NewVerifier(rule.VSA.Key)
	if err != nil {
		return fmt.Errorf("%w: rule %s: vsa.key: %w", errNoChecker, rule.Name, err)
	}
	exp := vsa.Expect{Key: key, VerifierID: rule.VSA.Verifier, MaxAge: rule.VSA.MaxAge, WithoutPolicyDigestUnsafe: rule.VSA.Layout == "",
		Revocations: r.Revocations}
	if rule.VSA.Layout != "" {
		if r.LayoutDigest == nil {
			return fmt.Errorf("%w: rule %s binds VSAs to layout %s and no trust source gives its digest", errNoChecker, rule.Name, rule.VSA.Layout)
		}
		if exp.PolicyDigest, err = r.LayoutDigest(ctx, rule.VSA.Layout); err != nil {
			return fmt.Errorf("rule %s: the current digest of layout %s: %w", rule.Name, rule.VSA.Layout, err)
		}
	}
	if _, err := vsa.VerifyImage(ctx, r.Registry, image, exp); err != nil {
		return err
	}
	return nil
}

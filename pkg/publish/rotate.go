package publish

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
)

// RotateOptions of Rotate.
type RotateOptions struct {
	// Policy is the policy as it is now: the artifact is re-encrypted to
	// exactly its platforms. Required.
	Policy *policy.Policy
	// Key must have signed the current image, and signs the new one and
	// the attestations moved to it. Required.
	Key crypto.Signer
	// DecryptionKey is the private key of a platform that can decrypt the
	// current image. Required.
	DecryptionKey crypto.PrivateKey
	// KeepOld keeps the old manifest in the registry.
	KeepOld bool
}

// Rotated is what Rotate did.
type Rotated struct {
	Ref      name.Tag
	Old, New name.Digest
	// Platforms can decrypt the new image.
	Platforms []string
	// Attestations moved from the old image to the new one.
	Attestations int
	// OldDeleted: the old manifest was deleted. DeleteError says why not,
	// when deleting was asked and failed (registries may refuse it); the
	// rotation itself succeeded.
	OldDeleted  bool
	DeleteError error
}

// Rotate re-encrypts the artifact tagged ref to the platforms opts.Policy
// names now, after a platform was removed from (or added to) it.
// Rewrapping the old content key would not revoke a removed platform that
// kept it, so:
//
//  1. the tag is resolved, and the image must be signed by opts.Key;
//  2. its attestations signed by opts.Key are read (none is fine);
//  3. it is decrypted with opts.DecryptionKey and encrypted again with
//     fresh content keys to exactly the policy's platforms (crypt.Rotate);
//  4. each attestation is re-issued for the new digest (oci.Move);
//  5. the new image is pushed by digest, signed, attested, and only then
//     is the tag moved (as Publish does);
//  6. the old manifest is deleted unless opts.KeepOld.
func Rotate(ctx context.Context, c *oci.Client, ref name.Tag, opts RotateOptions) (*Rotated, error) {
	if opts.Policy == nil || opts.Key == nil || opts.DecryptionKey == nil {
		return nil, errors.New("rotate: a policy, a signing key and a decryption key are required")
	}
	// 1.
	old, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if _, err := c.VerifySignatures(ctx, old, opts.Key.Public()); err != nil {
		return nil, fmt.Errorf("refusing to rotate %s: %w", old, err)
	}
	// 2.
	atts, err := c.VerifyAttestations(ctx, old, opts.Key.Public())
	if err != nil && !errors.Is(err, oci.ErrNoSignature) {
		return nil, err
	}
	// 3.
	oldImg, err := c.Pull(ctx, old)
	if err != nil {
		return nil, err
	}
	repo := ref.Context().Name()
	newImg, err := crypt.Rotate(ctx, opts.Policy, repo, oldImg, opts.DecryptionKey)
	if err != nil {
		return nil, err
	}
	// 4. The attestations name the old digest; oci.Attest refuses a
	// statement about another image.
	nd0, err := newImg.Digest()
	if err != nil {
		return nil, err
	}
	var envs []*dsse.Envelope
	for _, a := range atts {
		env, err := oci.Move(ctx, a.Statement, old, ref.Context().Digest(nd0.String()), opts.Key)
		if err != nil {
			return nil, err
		}
		envs = append(envs, env)
	}
	rule, err := opts.Policy.Rule(repo)
	if err != nil {
		return nil, err
	}
	// 5.
	nd, err := pushSigned(ctx, c, newImg, ref, opts.Key, envs)
	if err != nil {
		return nil, err
	}
	r := &Rotated{Ref: ref, Old: old, New: nd, Platforms: platformNames(rule), Attestations: len(envs)}
	// 6.
	if !opts.KeepOld && nd.String() != old.String() {
		if err := c.Delete(ctx, old); err != nil {
			r.DeleteError = err
		} else {
			r.OldDeleted = true
		}
	}
	return r, nil
}

// RecipientsResult lists who can decrypt an artifact.
type RecipientsResult struct {
	Ref    name.Reference
	Digest name.Digest
	// Recipients of every layer, named after the policy's platforms when a
	// policy was given (crypt.NamePlatforms).
	Recipients []crypt.Recipient
	// With a policy: its name, the platforms that can decrypt every
	// encrypted layer, the recipient key IDs of no platform of it, and
	// Mismatch, nil when the recipients are exactly the platforms its rule
	// names (as Check decides; ErrRecipients, policy.ErrNoRule, ...).
	Policy      string
	Platforms   []string
	UnknownKeys []string
	Mismatch    error
}

// Encrypted says whether the artifact has encrypted layers.
func (r *RecipientsResult) Encrypted() bool { return len(r.Recipients) > 0 }

// Recipients lists the recipients of the image at ref from its manifest,
// without decrypting or checking a signature; with a policy it also says
// which platforms those are and whether they are exactly the ones the
// policy names (Mismatch). An error is returned only when the listing
// itself failed.
func Recipients(ctx context.Context, c *oci.Client, ref name.Reference, pol *policy.Policy) (*RecipientsResult, error) {
	d, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	img, err := c.Pull(ctx, d)
	if err != nil {
		return nil, err
	}
	recips, err := crypt.Recipients(img)
	if err != nil {
		return nil, err
	}
	r := &RecipientsResult{Ref: ref, Digest: d, Recipients: recips}
	if pol == nil {
		return r, nil
	}
	r.Policy = pol.Name
	r.Recipients = crypt.NamePlatforms(recips, pol)
	r.Platforms = crypt.CanDecrypt(r.Recipients, pol)
	seen := map[string]bool{}
	for _, rc := range r.Recipients {
		if rc.Platform == "" && rc.KeyID != "" && !seen[rc.KeyID] {
			seen[rc.KeyID] = true
			r.UnknownKeys = append(r.UnknownKeys, rc.KeyID)
		}
	}
	if err := crypt.CheckRecipients(img, pol, ref.Context().Name()); err != nil {
		if errors.Is(err, crypt.ErrRecipients) {
			err = recipientsError(err)
		}
		r.Mismatch = err
	}
	return r, nil
}

package publish

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
)

// CheckOptions say what a published artifact must satisfy.
type CheckOptions struct {
	// Key is the publisher's public key: the image must carry a cosign
	// signature by it that names its digest. Required.
	Key crypto.PublicKey
	// Policy, when set, must have a rule for the repository; an image it
	// says must be encrypted must be, to exactly the rule's platforms. An
	// encrypted image is refused without a policy (ErrNeedPolicy): who else
	// can decrypt it would go unchecked.
	Policy *policy.Policy
}

// Checked is an artifact that passed Check.
type Checked struct {
	// Ref is the reference asked for, Digest what it resolved to: use the
	// digest from here on, never the tag again.
	Ref    name.Reference
	Digest name.Digest
	// Signatures are the key IDs of the signatures that verified.
	Signatures []string
	// Encrypted: the image has encrypted layers, whose Recipients (one
	// entry per layer and recipient, as the manifest declares them) are
	// exactly the platforms of Rule.
	Encrypted  bool
	Recipients []crypt.Recipient
	// Rule is the policy rule for the repository (zero without a policy).
	Rule policy.Rule

	image v1.Image
}

// Check decides whether the artifact at ref may be used, without
// decrypting it and without trusting the tag:
//
//  1. ref is resolved to a digest; everything below is about that digest.
//  2. A signature by opts.Key must name that digest (oci.ErrNoSignature,
//     oci.ErrSignature, oci.ErrDigestMismatch otherwise).
//  3. The manifest is read (its digest checked) and its recipients listed
//     from the layer annotations, without any private key.
//  4. With a policy: a rule must cover the repository (policy.ErrNoRule);
//     an image it says must be encrypted must be, and an encrypted image's
//     recipients must be exactly the rule's platforms (ErrRecipients).
//     Without one, an encrypted image is ErrNeedPolicy.
//
// Refusals match pkg/reject's reasons; a registry that could not be asked
// is reject.ErrUnableToCheck, never a verdict. Check prints nothing and is
// safe for concurrent use (as c is).
func Check(ctx context.Context, c *oci.Client, ref name.Reference, opts CheckOptions) (*Checked, error) {
	if opts.Key == nil {
		return nil, errors.New("check: the publisher's public key is required")
	}
	// 1.
	d, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	// 2.
	sigs, err := c.VerifySignatures(ctx, d, opts.Key)
	if err != nil {
		return nil, err
	}
	r := &Checked{Ref: ref, Digest: d}
	for _, s := range sigs {
		r.Signatures = append(r.Signatures, s.KeyID)
	}
	// 3.
	if r.image, err = c.Pull(ctx, d); err != nil {
		return nil, err
	}
	if r.Recipients, err = crypt.Recipients(r.image); err != nil {
		return nil, err
	}
	r.Encrypted = len(r.Recipients) > 0
	// 4.
	pol := opts.Policy
	if pol == nil {
		if r.Encrypted {
			return nil, fmt.Errorf("%w: %s is encrypted, and without a platform policy who else can decrypt it goes unchecked", ErrNeedPolicy, d)
		}
		return r, nil
	}
	repo := ref.Context().Name()
	if r.Rule, err = pol.Rule(repo); err != nil {
		return nil, err
	}
	if r.Rule.Encrypt && !r.Encrypted {
		return nil, recipientsError(fmt.Errorf("%w: %s is not encrypted, but rule %q of policy %q requires encryption", crypt.ErrRecipients, d, r.Rule.Match, pol.Name))
	}
	if r.Encrypted {
		if err := crypt.CheckRecipients(r.image, pol, repo); err != nil {
			if errors.Is(err, crypt.ErrRecipients) {
				return nil, recipientsError(err)
			}
			return nil, err
		}
	}
	return r, nil
}

// PullOptions are Check's, and the key to decrypt with.
type PullOptions struct {
	CheckOptions
	// DecryptionKey is this platform's private key; required when the
	// image is encrypted (ErrNeedDecryptionKey).
	DecryptionKey crypto.PrivateKey
}

// Pulled is an artifact that passed Check, decrypted.
type Pulled struct {
	Checked
	// Image is the artifact, decrypted. Every layer read from it is checked
	// against its digest (the ciphertext's, its HMAC and the plaintext's):
	// a read that does not match fails (oci.ErrBlobDigest, crypt.ErrDigest)
	// rather than return other bytes. Save reads it to the end.
	Image v1.Image
}

// Pull is Check followed by decryption with opts.DecryptionKey (a key that
// is no recipient is crypt.ErrNotRecipient). Nothing is written; Save
// writes the artifact once every digest verified.
func Pull(ctx context.Context, c *oci.Client, ref name.Reference, opts PullOptions) (*Pulled, error) {
	checked, err := Check(ctx, c, ref, opts.CheckOptions)
	if err != nil {
		return nil, err
	}
	p := &Pulled{Checked: *checked, Image: checked.image}
	if p.Encrypted {
		if opts.DecryptionKey == nil {
			return nil, fmt.Errorf("%w: %s is encrypted", ErrNeedDecryptionKey, p.Digest)
		}
		if p.Image, err = crypt.Decrypt(ctx, p.Image, opts.DecryptionKey); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Save writes the pulled artifact to out, which must not exist: a file or
// directory artifact as such, any other image as an OCI image layout.
// Nothing is left at out unless every layer's digest verified.
func (p *Pulled) Save(out string) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s already exists", out)
	}
	return Save(p.Digest.String(), p.Image, out)
}

// Save writes an artifact image to out (see Pulled.Save); what names it in
// errors.
func Save(what string, img v1.Image, out string) error {
	kind, err := oci.Kind(img)
	if err != nil {
		return err
	}
	switch kind {
	case oci.ArtifactTypeFile:
		return oci.SaveFile(what, img, out)
	case oci.ArtifactTypeDir:
		return oci.SaveDir(what, img, out)
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img); err != nil {
		os.RemoveAll(out)
		return err
	}
	return nil
}

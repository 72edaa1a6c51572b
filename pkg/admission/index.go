package admission

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/stepseal/stepseal/pkg/oci"
)

// MaxIndexChildren bounds the children of a multi-platform index that
// admission reads: each is one manifest request, within the decision's
// deadline. An index with more is refused (oci.ErrTooMany).
const MaxIndexChildren = 64

// indexJobs is how many children's manifests are read at once.
const indexJobs = 4

// indexEncryption checks every child of the multi-platform index ref, as
// cosign signs it: the signature (or VSA) was checked on the index digest,
// and a node pulls the child of its own platform, so each child must pass
// the encryption check an image of ref's repository would. The first child
// refused refuses the index, naming the child's platform and digest; a
// child that is itself an index, or not an image manifest, is ErrIndex
// (not checked, so not admitted). The index is encrypted (needs
// imagePullPolicy: Always) when any child is.
func (d *Decider) indexEncryption(ref name.Digest, idx v1.ImageIndex, rule *Rule, platform string) (verdict, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return verdict{}, fmt.Errorf("%w: index %s: %w", oci.ErrArtifact, ref.DigestStr(), err)
	}
	if n := len(im.Manifests); n > MaxIndexChildren {
		return verdict{}, fmt.Errorf("%w: index %s has %d children, at most %d are checked", oci.ErrTooMany, ref.DigestStr(), n, MaxIndexChildren)
	}
	if len(im.Manifests) == 0 {
		return verdict{}, fmt.Errorf("%w: index %s has no child", ErrIndex, ref.DigestStr())
	}
	repo := ref.Context().Name()
	results := make([]verdict, len(im.Manifests))
	errs := make([]error, len(im.Manifests))
	var g errgroup.Group
	g.SetLimit(indexJobs)
	for i, c := range im.Manifests {
		g.Go(func() error {
			what := fmt.Sprintf("index child %s (%s)", c.Digest, platformOf(c))
			if !c.MediaType.IsImage() {
				errs[i] = fmt.Errorf("%w: %s is of media type %s, not an image manifest", ErrIndex, what, c.MediaType)
				return errs[i]
			}
			img, err := idx.Image(c.Digest)
			if err == nil {
				_, err = img.Manifest()
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", what, oci.RegistryError(ref.RegistryStr(), err))
				return errs[i]
			}
			if results[i], err = d.imageEncryption(img, repo, rule, platform); err != nil {
				errs[i] = fmt.Errorf("%s: %w", what, err)
				return errs[i]
			}
			return nil
		})
	}
	_ = g.Wait()
	var v verdict
	for i := range im.Manifests {
		if errs[i] != nil {
			// The first in index order, whatever finished first.
			return verdict{encrypted: v.encrypted || results[i].encrypted}, errs[i]
		}
		v.encrypted = v.encrypted || results[i].encrypted
	}
	return v, nil
}

func platformOf(d v1.Descriptor) string {
	if d.Platform == nil {
		return "no platform"
	}
	return "platform " + d.Platform.String()
}

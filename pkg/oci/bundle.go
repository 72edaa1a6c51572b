package oci

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// Sigstore bundle referrers, as cosign's --new-bundle-format and Tekton
// Chains' sigstore-bundle storage write them.
const (
	// ArtifactTypeBundle is the artifactType (and layer media type) of a
	// Sigstore bundle v0.3 referrer.
	ArtifactTypeBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// AnnotationBundleContent and AnnotationBundlePredicate are the
	// referrer manifest's annotations: what the bundle holds and the
	// statement's predicate type.
	AnnotationBundleContent   = "dev.sigstore.bundle.content"
	AnnotationBundlePredicate = "dev.sigstore.bundle.predicateType"
)

// AttachBundle attaches a Sigstore bundle (v0.3, JSON) of a DSSE
// attestation about ref as an OCI 1.1 referrer of ref (no tag: cosign's tag
// scheme has no place for bundles), the way cosign's new bundle format
// does: artifactType and layer of the bundle media type, annotations
// dev.sigstore.bundle.content=dsse-envelope and the predicate type. The
// bundle's statement must name ref's digest. The manifest is the same for
// the same bundle, so attaching it again writes nothing new. The bundle's
// signature and log entry are not checked here: the caller attaches only
// bundles it verified (pkg/rekor's Publisher returns only those).
func (c *Client) AttachBundle(ctx context.Context, ref name.Digest, bundle []byte) error {
	ref, err := bindDigest(ref, c.o)
	if err != nil {
		return err
	}
	env, err := bundleEnvelope(bundle)
	if err != nil {
		return fmt.Errorf("attaching a bundle to %s: %w", ref, err)
	}
	st, err := statementOf(env)
	if err != nil {
		return fmt.Errorf("attaching a bundle to %s: %w", ref, err)
	}
	if !st.names(ref) {
		return fmt.Errorf("%w: the bundle's statement names %s, not %s", ErrDigestMismatch, st.subjectDigests(), ref)
	}
	reg := ref.RegistryStr()
	ro := c.remoteOptions(ctx)
	subject, err := remote.Head(ref, ro...)
	if err != nil {
		return fmt.Errorf("attaching to %s: %w", ref, registryError(reg, err))
	}
	img, err := buildImage(manifestSpec{
		artifactType: ArtifactTypeBundle,
		configType:   MediaTypeEmpty,
		config:       []byte("{}"),
		layers:       []v1.Layer{static.NewLayer(bundle, types.MediaType(ArtifactTypeBundle))},
		layerAnn:     []map[string]string{nil},
		annotations:  map[string]string{AnnotationBundleContent: "dsse-envelope", AnnotationBundlePredicate: st.PredicateType},
		subject:      &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	})
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if err := remote.Write(ref.Context().Digest(d.String()), img, ro...); err != nil {
		return fmt.Errorf("attaching bundle referrer to %s: %w", ref, registryError(reg, err))
	}
	return nil
}

// Bundles returns the Sigstore bundles attached to ref as referrers (at
// most MaxCandidates), unverified: pkg/rekor's Verify checks each.
func (c *Client) Bundles(ctx context.Context, ref name.Digest) ([][]byte, error) {
	ref, err := bindDigest(ref, c.o)
	if err != nil {
		return nil, err
	}
	// The tag scheme holds no bundles: AttestationTag's layers are of
	// another media type and are skipped.
	bs, err := c.candidates(ctx, ref, AttestationTag(ref), []string{ArtifactTypeBundle}, types.MediaType(ArtifactTypeBundle))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(bs))
	for i, b := range bs {
		out[i] = b.data
	}
	return out, nil
}

// bundleEnvelope is the DSSE envelope a bundle holds.
func bundleEnvelope(data []byte) (*dsse.Envelope, error) {
	var b protobundle.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: not a Sigstore bundle: %v", ErrArtifact, err)
	}
	if b.GetMediaType() != ArtifactTypeBundle {
		return nil, fmt.Errorf("%w: bundle media type %q, want %q", ErrArtifact, b.GetMediaType(), ArtifactTypeBundle)
	}
	de := b.GetDsseEnvelope()
	if de == nil {
		return nil, fmt.Errorf("%w: the bundle holds no DSSE envelope", ErrArtifact)
	}
	env := &dsse.Envelope{PayloadType: de.GetPayloadType(), Payload: base64.StdEncoding.EncodeToString(de.GetPayload())}
	for _, s := range de.GetSignatures() {
		env.Signatures = append(env.Signatures, dsse.Signature{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())})
	}
	return env, nil
}

package oci

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Media types, annotations and artifact types cosign uses for signatures and
// attestations, and the artifact types of our OCI 1.1 referrers.
const (
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	MediaTypeDSSE          = "application/vnd.dsse.envelope.v1+json"
	AnnotationSignature    = "dev.cosignproject.cosign/signature"
	AnnotationPredicate    = "predicateType"
	// ArtifactTypeSignature is the artifactType of signature referrers (as
	// cosign's OCI 1.1 mode writes them).
	ArtifactTypeSignature = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// ArtifactTypeAttestation is the artifactType of attestation referrers:
	// the in-toto type cosign's OCI 1.1 mode writes and looks for, and the
	// one GUAC's OCI collector takes.
	ArtifactTypeAttestation = "application/vnd.in-toto+json"
	// artifactTypeAttestationV0 is the artifactType stepseal's attestation
	// referrers had before (the DSSE media type): still read, never written.
	artifactTypeAttestationV0 = MediaTypeDSSE
)

// maxSignedBlob bounds what we read of a signature or attestation layer.
const maxSignedBlob = 16 << 20

// Bounds on what one verification reads of an image's signatures or
// attestations: an image carrying more is refused (ErrTooMany) rather than
// read without bound (an admission webhook runs this for every new digest).
const (
	MaxCandidates     = 64       // signature or attestation layers
	MaxReferrers      = 256      // referrer manifests listed and examined
	maxCandidateBytes = 64 << 20 // their layers' bytes together
)

// SignatureTag is cosign's tag for the signatures of digest d: sha256-<hex>.sig.
func SignatureTag(d name.Digest) name.Tag { return suffixTag(d, "sig") }

// AttestationTag is cosign's tag for the attestations of digest d: sha256-<hex>.att.
func AttestationTag(d name.Digest) name.Tag { return suffixTag(d, "att") }

func suffixTag(d name.Digest, suffix string) name.Tag {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + "." + suffix)
}

// Sign is Client.Sign with a Client made of opts.
func Sign(ctx context.Context, ref name.Digest, key crypto.Signer, opts ...Option) error {
	c, err := New(opts...)
	if err != nil {
		return err
	}
	return c.Sign(ctx, ref, key)
}

// Sign signs the image at ref with key in cosign's format: the simple-signing
// payload naming ref's repository and digest, signed with sigstore's signer
// for the key (ECDSA and RSA PKCS#1 v1.5 over SHA-256, ed25519 pure), which is
// what `cosign verify --key` checks. The signature is appended to the image
// tagged sha256-<hex>.sig (kept if already there) and attached as an OCI 1.1
// referrer of ref. key must be an *ecdsa.PrivateKey, *rsa.PrivateKey or
// ed25519.PrivateKey.
func (c *Client) Sign(ctx context.Context, ref name.Digest, key crypto.Signer) error {
	o := c.o
	ref, err := bindDigest(ref, o)
	if err != nil {
		return err
	}
	sv, err := signature.LoadSignerVerifier(key, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing %s: %w", ref, err)
	}
	pl, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		return err
	}
	sig, err := sv.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return fmt.Errorf("signing %s: %w", ref, err)
	}
	ann := map[string]string{AnnotationSignature: base64.StdEncoding.EncodeToString(sig)}
	// Like cosign, a payload this key already signed is not signed again
	// (ECDSA signatures differ each time, so compare by verification).
	dupe := func(l v1.Descriptor) bool {
		old, err := base64.StdEncoding.DecodeString(l.Annotations[AnnotationSignature])
		return err == nil && sv.VerifySignature(bytes.NewReader(old), bytes.NewReader(pl)) == nil
	}
	return c.attach(ctx, ref, SignatureTag(ref), ArtifactTypeSignature, pl, MediaTypeSimpleSigning, ann, dupe)
}

// Attest is Client.Attest with a Client made of opts.
func Attest(ctx context.Context, ref name.Digest, env *dsse.Envelope, predicateType string, opts ...Option) error {
	c, err := New(opts...)
	if err != nil {
		return err
	}
	return c.Attest(ctx, ref, env, predicateType)
}

// Attest attaches a signed DSSE envelope carrying an in-toto statement about
// ref, where cosign looks for attestations (sha256-<hex>.att, layer of media
// type application/vnd.dsse.envelope.v1+json annotated with predicateType)
// and as an OCI 1.1 referrer. The statement must name ref's digest among its
// subjects; anything else would be an attestation about another artifact.
func (c *Client) Attest(ctx context.Context, ref name.Digest, env *dsse.Envelope, predicateType string) error {
	o := c.o
	ref, err := bindDigest(ref, o)
	if err != nil {
		return err
	}
	if env == nil || len(env.Signatures) == 0 {
		return fmt.Errorf("%w: attestation for %s is not signed", ErrSignature, ref)
	}
	st, err := statementOf(env)
	if err != nil {
		return fmt.Errorf("attesting %s: %w", ref, err)
	}
	if !st.names(ref) {
		return fmt.Errorf("%w: attestation's subjects do not include %s", ErrDigestMismatch, ref)
	}
	if predicateType == "" {
		predicateType = st.PredicateType
	}
	if predicateType != st.PredicateType {
		return fmt.Errorf("%w: predicate type %q given for a statement of type %q", ErrArtifact, predicateType, st.PredicateType)
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return err
	}
	ann := map[string]string{AnnotationSignature: "", AnnotationPredicate: predicateType}
	return c.attach(ctx, ref, AttestationTag(ref), ArtifactTypeAttestation, raw, MediaTypeDSSE, ann, func(v1.Descriptor) bool { return true })
}

// attach appends one layer to cosign's tagged image for ref (creating it if
// absent) and pushes the same layer as a referrer of ref. Registries without
// the referrers API get go-containerregistry's tag-scheme fallback
// (sha256-<hex> index listing the referrers). When the tagged image already
// has a layer with the same content that dupe accepts, nothing is written.
func (c *Client) attach(ctx context.Context, ref name.Digest, tag name.Tag, artifactType string, data []byte, mt types.MediaType, ann map[string]string, dupe func(v1.Descriptor) bool) error {
	reg := ref.RegistryStr()
	ro := c.remoteOptions(ctx)
	subject, err := remote.Head(ref, ro...)
	if err != nil {
		return fmt.Errorf("attaching to %s: %w", ref, registryError(reg, err))
	}
	layer := static.NewLayer(data, mt)
	ld, _ := layer.Digest()

	// 1. cosign's tag scheme.
	base, err := remote.Image(tag, ro...)
	switch {
	case err == nil:
		m, err := base.Manifest()
		if err != nil {
			return fmt.Errorf("reading %s: %w", tag, registryError(reg, err))
		}
		for _, l := range m.Layers {
			if l.Digest == ld && dupe(l) {
				return nil
			}
		}
	case errors.Is(registryError(reg, err), ErrNotFound):
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	default:
		return fmt.Errorf("reading %s: %w", tag, registryError(reg, err))
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, Annotations: ann, MediaType: mt})
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img, ro...); err != nil {
		return fmt.Errorf("writing %s: %w", tag, registryError(reg, err))
	}

	// 2. OCI 1.1 referrer.
	sub := v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	annotations := map[string]string{}
	if p := ann[AnnotationPredicate]; p != "" {
		annotations[AnnotationPredicate] = p
	}
	img, err = buildImage(manifestSpec{
		artifactType: artifactType,
		configType:   MediaTypeEmpty,
		config:       []byte("{}"),
		layers:       []v1.Layer{layer},
		layerAnn:     []map[string]string{ann},
		annotations:  annotations,
		subject:      &sub,
	})
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if err := remote.Write(ref.Context().Digest(d.String()), img, ro...); err != nil {
		return fmt.Errorf("attaching referrer to %s: %w", ref, registryError(reg, err))
	}
	return nil
}

// signedBlob is one candidate signature or attestation found in the registry.
type signedBlob struct {
	data        []byte
	annotations map[string]string
	from        string // where it was found, for error messages
}

// candidates collects the layers of media type mt from cosign's tag and
// from ref's referrers of the given artifact types, de-duplicated.
func (c *Client) candidates(ctx context.Context, ref name.Digest, tag name.Tag, artifactTypes []string, mt types.MediaType) ([]signedBlob, error) {
	reg := ref.RegistryStr()
	ro := c.remoteOptions(ctx)
	var out []signedBlob
	seen := map[string]bool{}
	var total int64
	// collect counts the candidate layers of img's manifest before it
	// reads any, so a flood is refused without a blob request, and reads
	// each by digest from the repository (remote.Layer): the image's
	// LayerByDigest would re-read its manifest for every layer.
	collect := func(img v1.Image, from string) error {
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		var todo []v1.Descriptor
		for _, l := range m.Layers {
			if l.MediaType != mt || l.Size > maxSignedBlob {
				continue
			}
			key := l.Digest.String() + "\x00" + l.Annotations[AnnotationSignature]
			if seen[key] {
				continue
			}
			seen[key] = true
			if total += l.Size; len(out)+len(todo) == MaxCandidates || total > maxCandidateBytes {
				return fmt.Errorf("%w: %s: more than %d signatures or attestations, or more than %d MiB of them, attached to %s", ErrTooMany, from, MaxCandidates, maxCandidateBytes>>20, ref)
			}
			todo = append(todo, l)
		}
		for _, l := range todo {
			layer, err := remote.Layer(ref.Context().Digest(l.Digest.String()), ro...)
			if err != nil {
				return err
			}
			rc, err := layer.Compressed()
			if err != nil {
				return err
			}
			data, err := io.ReadAll(io.LimitReader(rc, maxSignedBlob))
			rc.Close()
			if err != nil {
				return err
			}
			out = append(out, signedBlob{data: data, annotations: l.Annotations, from: from})
		}
		return nil
	}
	img, err := remote.Image(tag, ro...)
	if err == nil {
		err = collect(img, tag.String())
	}
	if errors.Is(err, ErrTooMany) {
		return nil, err
	}
	if err != nil && !errors.Is(registryError(reg, err), ErrNotFound) {
		return nil, fmt.Errorf("reading %s: %w", tag, registryError(reg, err))
	}
	// The index's artifactType is what the registry says; some (ggcr's
	// in-process registry) report the config media type instead. The
	// manifest's own artifactType decides.
	idx, err := remote.Referrers(ref, ro...)
	if err != nil && !errors.Is(registryError(reg, err), ErrNotFound) {
		return nil, fmt.Errorf("listing referrers of %s: %w", ref, registryError(reg, err))
	}
	if err == nil {
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("listing referrers of %s: %w", ref, registryError(reg, err))
		}
		if len(im.Manifests) > MaxReferrers {
			return nil, fmt.Errorf("%w: %d referrers of %s, at most %d are examined", ErrTooMany, len(im.Manifests), ref, MaxReferrers)
		}
		for _, d := range im.Manifests {
			if !slices.Contains(artifactTypes, d.ArtifactType) && d.ArtifactType != MediaTypeEmpty {
				continue
			}
			rref := ref.Context().Digest(d.Digest.String())
			img, err := remote.Image(rref, ro...)
			if err != nil {
				return nil, fmt.Errorf("reading referrer %s: %w", rref, registryError(reg, err))
			}
			m, err := img.Manifest()
			if err != nil {
				return nil, fmt.Errorf("reading referrer %s: %w", rref, registryError(reg, err))
			}
			if !slices.Contains(artifactTypes, m.ArtifactType) || m.Subject == nil || m.Subject.Digest.String() != ref.DigestStr() {
				continue
			}
			if err := collect(img, rref.String()); err != nil {
				if errors.Is(err, ErrTooMany) {
					return nil, err
				}
				return nil, fmt.Errorf("reading referrer %s: %w", rref, registryError(reg, err))
			}
		}
	}
	return out, nil
}

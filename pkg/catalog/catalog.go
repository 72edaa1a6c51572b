package catalog

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
)

// The annotations of Tekton's bundle contract (tektoncd/pipeline
// docs/tekton-bundle-contracts.md; pkg/remote/oci reads them).
const (
	AnnotationAPIVersion = "dev.tekton.image.apiVersion"
	AnnotationKind       = "dev.tekton.image.kind"
	AnnotationName       = "dev.tekton.image.name"
	// MaxResources is the contract's limit of layers per bundle.
	MaxResources = 20
)

// ErrResource: a document that cannot go into a bundle — not a Tekton
// Task, Pipeline or StepAction, without a name, twice the same kind and
// name, an image still a ko:// placeholder, or more than MaxResources. It
// is a reject.ErrMalformed.
var ErrResource = reject.Sentinel(reject.ErrMalformed, "not a bundle resource")

// Resource is one catalog resource as it goes into a bundle layer.
type Resource struct {
	// APIVersion (tekton.dev/v1, tekton.dev/v1beta1), Kind (Task,
	// StepAction, Pipeline) and Name, from the document.
	APIVersion, Kind, Name string
	// Data is the document's YAML, as given.
	Data []byte
}

var kinds = map[string]bool{"Task": true, "Pipeline": true, "StepAction": true}

// Split reads a multi-document YAML stream (ko resolve's output) into
// resources, in order, refusing anything a bundle of stepseal's catalog
// must not hold (ErrResource).
func Split(stream []byte) ([]Resource, error) {
	var out []Resource
	seen := map[string]bool{}
	for i, doc := range splitDocuments(stream) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrResource, i+1, err)
		}
		r := Resource{APIVersion: meta.APIVersion, Kind: meta.Kind, Name: meta.Metadata.Name, Data: doc}
		if !strings.HasPrefix(r.APIVersion, "tekton.dev/") || !kinds[r.Kind] {
			return nil, fmt.Errorf("%w: document %d is %s %s, not a Tekton Task, Pipeline or StepAction", ErrResource, i+1, r.APIVersion, r.Kind)
		}
		if r.Name == "" {
			return nil, fmt.Errorf("%w: document %d (%s) has no metadata.name", ErrResource, i+1, r.Kind)
		}
		key := strings.ToLower(r.Kind) + "/" + r.Name
		if seen[key] {
			return nil, fmt.Errorf("%w: %s twice", ErrResource, key)
		}
		seen[key] = true
		if bytes.Contains(doc, []byte("ko://")) {
			return nil, fmt.Errorf("%w: %s still names a ko:// image: resolve it first (ko resolve), so the bundle pins images by digest", ErrResource, key)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no resources", ErrResource)
	}
	if len(out) > MaxResources {
		return nil, fmt.Errorf("%w: %d resources, a Tekton bundle holds at most %d", ErrResource, len(out), MaxResources)
	}
	return out, nil
}

// splitDocuments splits at lines that are exactly "---".
func splitDocuments(stream []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(stream, []byte("\n")) {
		if string(bytes.TrimRight(line, "\r\n")) == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

// Bundle is the OCI image of rs: per resource, in order, one layer holding
// a tar of one file (named after the resource) with its YAML, annotated as
// the contract says (kind lower-case and singular, apiVersion's version as
// tkn bundle push writes it). The same resources give the same digest.
func Bundle(rs []Resource) (v1.Image, error) {
	if len(rs) == 0 || len(rs) > MaxResources {
		return nil, fmt.Errorf("%w: %d resources (1 to %d)", ErrResource, len(rs), MaxResources)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, r := range rs {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: r.Name, Mode: 0o600, Size: int64(len(r.Data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(r.Data); err != nil {
			return nil, err
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		b := buf.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		_, version, _ := strings.Cut(r.APIVersion, "/")
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, Annotations: map[string]string{
			AnnotationAPIVersion: version,
			AnnotationKind:       strings.ToLower(r.Kind),
			AnnotationName:       r.Name,
		}}); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// Publish pushes img by digest to ref's repository, signs it with key
// (cosign's format: `cosign verify --key` accepts it) and only then moves
// ref's tag, so the tag never names an unsigned bundle.
func Publish(ctx context.Context, c *oci.Client, img v1.Image, ref name.Reference, key crypto.Signer) (name.Digest, error) {
	if key == nil {
		return name.Digest{}, errors.New("catalog: a signing key is required")
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	dref, err := c.Push(ctx, img, ref.Context().Digest(d.String()))
	if err != nil {
		return name.Digest{}, err
	}
	if err := c.Sign(ctx, dref, key); err != nil {
		return name.Digest{}, err
	}
	if _, isDigest := ref.(name.Digest); !isDigest {
		if _, err := c.Push(ctx, img, ref); err != nil {
			return name.Digest{}, err
		}
	}
	return dref, nil
}

package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media and artifact types of stepseal's own artifacts.
const (
	// ArtifactTypeFile marks a manifest holding one file as its only layer.
	ArtifactTypeFile = "application/vnd.stepseal.file.v1"
	// ArtifactTypeDir marks a manifest holding a directory as one deterministic tar layer.
	ArtifactTypeDir = "application/vnd.stepseal.dir.v1"
	// ConfigTypeFile is the config media type of file artifacts.
	ConfigTypeFile = "application/vnd.stepseal.file.config.v1+json"
	// LayerTypeFile is the default media type of a file artifact's layer: the
	// file's bytes as they are, so the layer digest is the file's sha256.
	LayerTypeFile = "application/vnd.stepseal.file.layer.v1"
	// AnnotationTitle carries a file's or directory's base name (as ORAS does).
	AnnotationTitle = "org.opencontainers.image.title"
	// MediaTypeEmpty is the OCI 1.1 empty descriptor's media type ("{}").
	MediaTypeEmpty = "application/vnd.oci.empty.v1+json"
)

// Source is what Push publishes: a v1.Image or a v1.ImageIndex.
type Source interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	RawManifest() ([]byte, error)
}

// blobLayer is a layer whose bytes are re-read from an opener each time, so
// no layer is ever held in memory; digest and size are computed up front.
type blobLayer struct {
	open      func() (io.ReadCloser, error)
	digest    v1.Hash
	size      int64
	mediaType types.MediaType
}

func (l *blobLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *blobLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *blobLayer) Size() (int64, error)                 { return l.size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error)  { return l.mediaType, nil }
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) { return l.open() }
func (l *blobLayer) Compressed() (io.ReadCloser, error)   { return l.open() }

// newBlobLayer digests what open yields once (streaming) and returns a layer
// that re-opens it for upload. If the content changes in between, the
// registry rejects the upload because the digest no longer matches.
func newBlobLayer(open func() (io.ReadCloser, error), mt types.MediaType) (*blobLayer, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, rc, make([]byte, 1<<20))
	if err != nil {
		return nil, err
	}
	return &blobLayer{open: open, size: n, mediaType: mt,
		digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}}, nil
}

// artifactImage is an image whose manifest we write ourselves (artifactType,
// custom config, subject), with layers that stream.
type artifactImage struct {
	mediaType types.MediaType
	manifest  []byte
	config    []byte
	layers    []v1.Layer
}

var _ partial.CompressedImageCore = (*artifactImage)(nil)

func (a *artifactImage) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifactImage) MediaType() (types.MediaType, error) { return a.mediaType, nil }
func (a *artifactImage) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifactImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range a.layers {
		if d, _ := l.Digest(); d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("layer %s not in artifact", h)
}

// manifestSpec describes an OCI image manifest to build.
type manifestSpec struct {
	artifactType string
	configType   types.MediaType
	config       []byte
	layers       []v1.Layer
	layerAnn     []map[string]string
	annotations  map[string]string
	subject      *v1.Descriptor
}

type ociManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func buildImage(s manifestSpec) (v1.Image, error) {
	ch, csize, err := v1.SHA256(bytes.NewReader(s.config))
	if err != nil {
		return nil, err
	}
	m := ociManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  s.artifactType,
		Config:        v1.Descriptor{MediaType: s.configType, Digest: ch, Size: csize},
		Layers:        []v1.Descriptor{},
		Subject:       s.subject,
		Annotations:   s.annotations,
	}
	for i, l := range s.layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		sz, err := l.Size()
		if err != nil {
			return nil, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		desc := v1.Descriptor{MediaType: mt, Digest: d, Size: sz}
		if i < len(s.layerAnn) {
			desc.Annotations = s.layerAnn[i]
		}
		m.Layers = append(m.Layers, desc)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifactImage{mediaType: types.OCIManifestSchema1, manifest: raw, config: s.config, layers: s.layers})
}

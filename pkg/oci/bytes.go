package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrTooLarge: an artifact larger than the caller accepts; nothing of it
// was read beyond its manifest.
var ErrTooLarge = fmt.Errorf("%w: larger than allowed", ErrArtifact)

// maxManifest caps the manifest FetchBytes reads.
const maxManifest = 64 << 10

// PushBytes pushes data as a one-layer OCI artifact (the layer is data
// itself, so its digest is data's sha256; the config is OCI's empty
// descriptor) of artifactType, tagged tag, and returns its digest.
func (c *Client) PushBytes(ctx context.Context, tag name.Tag, data []byte, artifactType, layerType, title string) (name.Digest, error) {
	img, err := BytesArtifact(data, artifactType, layerType, title)
	if err != nil {
		return name.Digest{}, err
	}
	return c.Push(ctx, img, tag)
}

// BytesArtifact is the one-layer artifact PushBytes pushes; the same bytes
// give the same manifest digest.
func BytesArtifact(data []byte, artifactType, layerType, title string) (v1.Image, error) {
	l, err := newBlobLayer(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, types.MediaType(layerType))
	if err != nil {
		return nil, err
	}
	var ann []map[string]string
	if title != "" {
		ann = []map[string]string{{AnnotationTitle: title}}
	}
	return buildImage(manifestSpec{artifactType: artifactType, configType: MediaTypeEmpty, config: []byte("{}"), layers: []v1.Layer{l}, layerAnn: ann})
}

// FetchBytes returns the only layer of the artifact at ref, checked
// against its digest. A manifest with another number of layers is
// ErrArtifact; a layer over max bytes is ErrTooLarge, refused before it
// is read. A reference the registry does not have is ErrNotFound.
func (c *Client) FetchBytes(ctx context.Context, ref name.Reference, max int64) ([]byte, v1.Hash, error) {
	ref, err := bind(ref, c.o)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	reg := ref.Context().RegistryStr()
	desc, err := remote.Get(ref, c.remoteOptions(ctx)...)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %w", ref, registryError(reg, err))
	}
	if len(desc.Manifest) > maxManifest {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s: manifest of %d bytes", ErrTooLarge, ref, len(desc.Manifest))
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil || len(m.Layers) != 1 {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s is not a one-layer artifact", ErrArtifact, ref)
	}
	ld := m.Layers[0]
	if ld.Size < 0 || ld.Size > max {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s: %d bytes, at most %d accepted", ErrTooLarge, ref, ld.Size, max)
	}
	if ld.Digest.Algorithm != "sha256" {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s: layer digest %s", ErrArtifact, ref, ld.Digest)
	}
	layer, err := remote.Layer(ref.Context().Digest(ld.Digest.String()), c.remoteOptions(ctx)...)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %w", ref, registryError(reg, err))
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %w", ref, registryError(reg, err))
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, ld.Size+1))
	if _, err := io.Copy(buf, io.LimitReader(rc, ld.Size+1)); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %w", ref, registryError(reg, err))
	}
	sum := sha256.Sum256(buf.Bytes())
	if int64(buf.Len()) != ld.Size || hex.EncodeToString(sum[:]) != ld.Digest.Hex {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s: layer %s", ErrBlobDigest, ref, ld.Digest)
	}
	return buf.Bytes(), ld.Digest, nil
}

// StatusCode is the HTTP status a registry answered err with (0: none).
func StatusCode(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

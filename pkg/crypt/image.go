package crypt

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// describedLayer is a layer whose descriptor (digest and annotations
// included) may only be known once its content has been streamed.
type describedLayer interface {
	v1.Layer
	Descriptor() (*v1.Descriptor, error)
}

// image is an image whose layers are replaced (encrypted or decrypted) and
// whose manifest is built from the new layers' descriptors when first asked
// for. Layers() returns the layers without forcing the manifest, so a pusher
// that streams each layer before asking for the manifest reads (and
// encrypts) every layer once.
type image struct {
	v1.Image // partial.CompressedToImage(core)
	layers   []v1.Layer
}

func (i *image) Layers() ([]v1.Layer, error) { return i.layers, nil }

type core struct {
	template  v1.Manifest
	mediaType types.MediaType
	rawConfig []byte
	layers    []describedLayer

	once     sync.Once
	manifest []byte
	byDigest map[v1.Hash]partial.CompressedLayer
	err      error
}

func newImage(template v1.Manifest, rawConfig []byte, layers []describedLayer) (v1.Image, error) {
	c := &core{template: template, mediaType: template.MediaType, rawConfig: rawConfig, layers: layers}
	img, err := partial.CompressedToImage(c)
	if err != nil {
		return nil, err
	}
	ls := make([]v1.Layer, len(layers))
	for i, l := range layers {
		ls[i] = l
	}
	return &image{Image: img, layers: ls}, nil
}

func (c *core) RawConfigFile() ([]byte, error)      { return c.rawConfig, nil }
func (c *core) MediaType() (types.MediaType, error) { return c.mediaType, nil }
func (c *core) RawManifest() ([]byte, error)        { c.build(); return c.manifest, c.err }
func (c *core) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	c.build()
	if c.err != nil {
		return nil, c.err
	}
	if l, ok := c.byDigest[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("layer %s not in image", h)
}

func (c *core) build() {
	c.once.Do(func() {
		m := c.template
		m.Layers = make([]v1.Descriptor, len(c.layers))
		c.byDigest = map[v1.Hash]partial.CompressedLayer{}
		for i, l := range c.layers {
			d, err := l.Descriptor()
			if err != nil {
				c.err = fmt.Errorf("layer %d: %w", i, err)
				return
			}
			m.Layers[i] = *d
			c.byDigest[d.Digest] = l
		}
		c.manifest, c.err = json.Marshal(m)
	})
}

// isEncrypted reports whether a layer media type is an ocicrypt encrypted one.
func isEncrypted(mt types.MediaType) bool { return strings.HasSuffix(string(mt), encryptedSuffix) }

// withoutEncAnnotations drops ocicrypt's annotations (as ocicrypt's
// FilterOutAnnotations does); nil when nothing is left.
func withoutEncAnnotations(a map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if strings.HasPrefix(k, annotationPrefix) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// manifestOf returns an image's manifest as the template for the encrypted
// or decrypted one, in OCI form (ocicrypt media types exist only in OCI).
func manifestOf(img v1.Image) (v1.Manifest, []byte, error) {
	mt, err := img.MediaType()
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	switch mt {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	default:
		return v1.Manifest{}, nil, fmt.Errorf("%w: manifest media type %q (encrypt each platform image of an index)", ErrUnsupported, mt)
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	t := *m.DeepCopy()
	t.MediaType = types.OCIManifestSchema1
	if t.Config.MediaType == types.DockerConfigJSON {
		t.Config.MediaType = types.OCIConfigJSON
	}
	return t, raw, nil
}

// ociLayerType maps a plaintext layer media type to its OCI form.
func ociLayerType(mt types.MediaType) (types.MediaType, error) {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer, nil
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer, nil
	case types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return "", fmt.Errorf("%w: foreign layer %q is not stored in the registry and cannot be encrypted", ErrUnsupported, mt)
	}
	if isEncrypted(mt) {
		return "", fmt.Errorf("%w: layer is already encrypted (%s); use Rotate to re-encrypt", ErrUnsupported, mt)
	}
	return mt, nil
}

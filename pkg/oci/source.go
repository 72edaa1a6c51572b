package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FileOption adjusts a file artifact.
type FileOption func(*fileOptions)

type fileOptions struct{ layerType types.MediaType }

// WithLayerMediaType sets the media type of a file artifact's layer (default
// LayerTypeFile).
func WithLayerMediaType(mt string) FileOption {
	return func(o *fileOptions) { o.layerType = types.MediaType(mt) }
}

type fileConfig struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// FromFile makes an artifact of one file: a single layer holding the file's
// bytes unchanged (its digest is the file's sha256), a config of our own media
// type, artifactType ArtifactTypeFile and the file's base name as the layer's
// title annotation. The file is read once to digest it and again to upload it.
func FromFile(p string, opts ...FileOption) (v1.Image, error) {
	o := fileOptions{layerType: LayerTypeFile}
	for _, f := range opts {
		f(&o)
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrArtifact, p)
	}
	l, err := newBlobLayer(func() (io.ReadCloser, error) { return os.Open(p) }, o.layerType)
	if err != nil {
		return nil, err
	}
	title := filepath.Base(p)
	cfg, _ := json.Marshal(fileConfig{Kind: "file", Name: title})
	return buildImage(manifestSpec{
		artifactType: ArtifactTypeFile,
		configType:   ConfigTypeFile,
		config:       cfg,
		layers:       []v1.Layer{l},
		layerAnn:     []map[string]string{{AnnotationTitle: title}},
	})
}

// FromDir makes an artifact of a directory tree: an OCI image with one
// uncompressed tar layer written deterministically (entries sorted, times
// zeroed, owners 0/0 without names, permission bits kept), so the same tree
// always has the same digest. Regular files, directories and symbolic links
// are supported; other file types are an error. The tree is read once to
// digest it and again to upload it.
func FromDir(dir string) (v1.Image, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrArtifact, dir)
	}
	l, err := newBlobLayer(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(WriteTar(pw, dir)) }()
		return pr, nil
	}, types.OCIUncompressedLayer)
	if err != nil {
		return nil, err
	}
	cfg, err := json.Marshal(v1.ConfigFile{
		Created: v1.Time{Time: time.Unix(0, 0).UTC()},
		RootFS:  v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{l.digest}},
	})
	if err != nil {
		return nil, err
	}
	title := filepath.Base(filepath.Clean(dir))
	return buildImage(manifestSpec{
		artifactType: ArtifactTypeDir,
		configType:   types.OCIConfigJSON,
		config:       cfg,
		layers:       []v1.Layer{l},
		layerAnn:     []map[string]string{{AnnotationTitle: title}},
		annotations:  map[string]string{AnnotationTitle: title},
	})
}

// WriteTar writes the deterministic tar stream of dir that FromDir uploads.
func WriteTar(w io.Writer, dir string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(info.Mode().Perm()),
			ModTime: time.Unix(0, 0),
			Format:  tar.FormatPAX,
		}
		switch {
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		case info.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		default:
			return fmt.Errorf("%w: %s: unsupported file type %s", ErrArtifact, p, info.Mode().Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("%s changed while being read", p)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// FromLayout opens an OCI image layout directory. With one manifest in its
// index.json that image (or index) is the artifact; with several, the whole
// index is.
func FromLayout(dir string) (Source, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrArtifact, dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	switch len(im.Manifests) {
	case 0:
		return nil, fmt.Errorf("%w: OCI layout %s holds no manifest", ErrArtifact, dir)
	case 1:
		d := im.Manifests[0]
		if d.MediaType.IsIndex() {
			return idx.ImageIndex(d.Digest)
		}
		if d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
		return nil, fmt.Errorf("%w: OCI layout %s: manifest of media type %s", ErrArtifact, dir, d.MediaType)
	}
	return idx, nil
}

// FromTarball opens an image tarball: `docker save` format (manifest.json),
// or an OCI layout archived as tar (oci-layout + index.json, one image
// manifest). Blobs are read from the tar file when uploaded, never buffered.
func FromTarball(p string) (v1.Image, error) {
	entries, err := indexTar(p)
	if err != nil {
		return nil, err
	}
	if _, ok := entries["manifest.json"]; ok {
		return tarball.ImageFromPath(p, nil)
	}
	if _, ok := entries["oci-layout"]; ok {
		return ociArchiveImage(p, entries)
	}
	return nil, fmt.Errorf("%w: %s is neither a docker image tarball (manifest.json) nor an OCI archive (oci-layout)", ErrArtifact, p)
}

// Open picks the source kind from what is at p: a directory with an
// oci-layout file is an OCI layout, another directory a directory artifact;
// a file is an image tarball when it is a tar with manifest.json or
// oci-layout, and a file artifact otherwise.
func Open(p string) (Source, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "oci-layout")); err == nil {
			return FromLayout(p)
		}
		return FromDir(p)
	}
	if entries, err := indexTar(p); err == nil {
		_, docker := entries["manifest.json"]
		_, oci := entries["oci-layout"]
		if docker || oci {
			return FromTarball(p)
		}
	}
	return FromFile(p)
}

type tarEntry struct{ offset, size int64 }

// indexTar lists the regular files of a tar with the offset of their data.
func indexTar(p string) (map[string]tarEntry, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := &countingSeeker{f: f}
	tr := tar.NewReader(cr)
	out := map[string]tarEntry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: not a tar archive: %w", ErrArtifact, p, err)
		}
		if h.Typeflag == tar.TypeReg {
			out[path.Clean(h.Name)] = tarEntry{offset: cr.pos, size: h.Size}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s: empty tar archive", ErrArtifact, p)
	}
	return out, nil
}

// countingSeeker tracks the offset tar.Reader has reached; it seeks over
// entry data instead of reading it.
type countingSeeker struct {
	f   *os.File
	pos int64
}

func (c *countingSeeker) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	c.pos += int64(n)
	return n, err
}

func (c *countingSeeker) Seek(off int64, whence int) (int64, error) {
	n, err := c.f.Seek(off, whence)
	if err == nil {
		c.pos = n
	}
	return n, err
}

func ociArchiveImage(p string, entries map[string]tarEntry) (v1.Image, error) {
	read := func(name string, limit int64) ([]byte, error) {
		e, ok := entries[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s: OCI archive lacks %s", ErrArtifact, p, name)
		}
		if e.size > limit {
			return nil, fmt.Errorf("%w: %s: %s is larger than %d bytes", ErrArtifact, p, name, limit)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b := make([]byte, e.size)
		_, err = f.ReadAt(b, e.offset)
		return b, err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	raw, err := read("index.json", 4<<20)
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: index.json: %w", ErrArtifact, p, err)
	}
	if len(idx.Manifests) != 1 || !idx.Manifests[0].MediaType.IsImage() {
		return nil, fmt.Errorf("%w: %s: OCI archive must hold exactly one image manifest (extract it and push the layout directory for indexes)", ErrArtifact, p)
	}
	mraw, err := read(blob(idx.Manifests[0].Digest), 4<<20)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(mraw))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: manifest: %w", ErrArtifact, p, err)
	}
	cfg, err := read(blob(m.Config.Digest), 64<<20)
	if err != nil {
		return nil, err
	}
	layers := make([]v1.Layer, 0, len(m.Layers))
	for _, d := range m.Layers {
		e, ok := entries[blob(d.Digest)]
		if !ok {
			return nil, fmt.Errorf("%w: %s: OCI archive lacks layer %s", ErrArtifact, p, d.Digest)
		}
		if e.size != d.Size {
			return nil, fmt.Errorf("%w: %s: layer %s has %d bytes, manifest says %d", ErrArtifact, p, d.Digest, e.size, d.Size)
		}
		layers = append(layers, &blobLayer{digest: d.Digest, size: d.Size, mediaType: d.MediaType,
			open: func() (io.ReadCloser, error) {
				f, err := os.Open(p)
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{io.NewSectionReader(f, e.offset, e.size), f}, nil
			}})
	}
	return partial.CompressedToImage(&artifactImage{mediaType: idx.Manifests[0].MediaType, manifest: mraw, config: cfg, layers: layers})
}

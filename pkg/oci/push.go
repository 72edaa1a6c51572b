package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push is Client.Push with a Client made of opts.
func Push(ctx context.Context, src Source, ref name.Reference, opts ...Option) (name.Digest, error) {
	c, err := New(opts...)
	if err != nil {
		return name.Digest{}, err
	}
	return c.Push(ctx, src, ref)
}

// Push uploads src to ref and returns the digest reference of what was
// pushed. Blobs stream from their source; the manifest (and with it the tag)
// is written last, so a failed push leaves nothing tagged. If ref carries a
// digest it must be src's.
func (c *Client) Push(ctx context.Context, src Source, ref name.Reference) (name.Digest, error) {
	o := c.o
	ref, err := bind(ref, o)
	if err != nil {
		return name.Digest{}, err
	}
	reg := ref.Context().RegistryStr()
	dg, err := src.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != dg.String() {
		return name.Digest{}, fmt.Errorf("%w: pushing %s to %s", ErrReference, dg, ref)
	}
	updates, done := o.startProgress(ref.String())
	ro := c.progressOptions(ctx, updates)
	switch s := src.(type) {
	case v1.Image:
		err = remote.Write(ref, s, ro...)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, s, ro...)
	default:
		err = fmt.Errorf("%w: %T is neither an image nor an index", ErrArtifact, src)
	}
	done()
	if err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, registryError(reg, err))
	}
	return ref.Context().Digest(dg.String()), nil
}

// Resolve is Client.Resolve with a Client made of opts.
func Resolve(ctx context.Context, ref name.Reference, opts ...Option) (name.Digest, error) {
	c, err := New(opts...)
	if err != nil {
		return name.Digest{}, err
	}
	return c.Resolve(ctx, ref)
}

// Resolve returns the digest a reference currently points to.
func (c *Client) Resolve(ctx context.Context, ref name.Reference) (name.Digest, error) {
	o := c.o
	ref, err := bind(ref, o)
	if err != nil {
		return name.Digest{}, err
	}
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(ref, c.remoteOptions(ctx)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolving %s: %w", ref, registryError(ref.Context().RegistryStr(), err))
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// Describe returns the digest and size of the manifest a reference
// currently points to (what a TUF target of an OCI artifact binds).
func (c *Client) Describe(ctx context.Context, ref name.Reference) (name.Digest, int64, error) {
	ref, err := bind(ref, c.o)
	if err != nil {
		return name.Digest{}, 0, err
	}
	desc, err := remote.Head(ref, c.remoteOptions(ctx)...)
	if err == nil && desc.Size <= 0 {
		// A registry that does not say the size on HEAD: read the manifest.
		var d *remote.Descriptor
		if d, err = remote.Get(ref, c.remoteOptions(ctx)...); err == nil {
			desc = &d.Descriptor
		}
	}
	if err != nil {
		return name.Digest{}, 0, fmt.Errorf("resolving %s: %w", ref, registryError(ref.Context().RegistryStr(), err))
	}
	return ref.Context().Digest(desc.Digest.String()), desc.Size, nil
}

// Pull is Client.Pull with a Client made of opts.
func Pull(ctx context.Context, ref name.Reference, opts ...Option) (v1.Image, error) {
	c, err := New(opts...)
	if err != nil {
		return nil, err
	}
	return c.Pull(ctx, ref)
}

// Pull returns the image at ref; go-containerregistry checks the manifest
// against the digest and every blob against its digest as it is read.
func (c *Client) Pull(ctx context.Context, ref name.Reference) (v1.Image, error) {
	o := c.o
	ref, err := bind(ref, o)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, c.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, registryError(ref.Context().RegistryStr(), err))
	}
	return img, nil
}

// PullFile fetches a file artifact (one layer) by digest and writes it to
// dst through a temporary file, renamed into place only once the layer
// digest has been verified.
func PullFile(ctx context.Context, ref name.Digest, dst string, opts ...Option) error {
	c, err := New(opts...)
	if err != nil {
		return err
	}
	return c.PullFile(ctx, ref, dst)
}

// PullFile is the package-level PullFile with the Client's options.
func (c *Client) PullFile(ctx context.Context, ref name.Digest, dst string) error {
	img, err := c.Pull(ctx, ref)
	if err != nil {
		return err
	}
	return SaveFile(ref.String(), img, dst)
}

// PullDir fetches a directory artifact by digest and extracts it into dst,
// which must not exist (see SaveDir).
func PullDir(ctx context.Context, ref name.Digest, dst string, opts ...Option) error {
	c, err := New(opts...)
	if err != nil {
		return err
	}
	return c.PullDir(ctx, ref, dst)
}

// PullDir is the package-level PullDir with the Client's options.
func (c *Client) PullDir(ctx context.Context, ref name.Digest, dst string) error {
	img, err := c.Pull(ctx, ref)
	if err != nil {
		return err
	}
	return SaveDir(ref.String(), img, dst)
}

// Kind tells what an artifact image holds, from its manifest's artifactType
// (or, for file artifacts, the config media type): ArtifactTypeFile,
// ArtifactTypeDir, or "" for any other (container) image.
func Kind(img v1.Image) (string, error) {
	m, err := img.Manifest()
	if err != nil {
		return "", err
	}
	switch {
	case m.ArtifactType == ArtifactTypeFile || m.Config.MediaType == ConfigTypeFile:
		return ArtifactTypeFile, nil
	case m.ArtifactType == ArtifactTypeDir:
		return ArtifactTypeDir, nil
	}
	return "", nil
}

// SaveFile writes the single layer of a file artifact to dst through a
// temporary file beside it, renamed into place only once the layer's digest
// has been verified. what names the artifact in errors.
func SaveFile(what string, img v1.Image, dst string) error {
	layer, err := onlyLayer(what, img)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	rc, err := openVerified(what, layer)
	if err != nil {
		tmp.Close()
		return err
	}
	_, err = io.CopyBuffer(tmp, rc, make([]byte, 1<<20))
	rc.Close()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// SaveDir extracts the tar layer of a directory artifact into dst, which must
// not exist. Extraction happens in a temporary directory beside dst through
// os.Root (no entry can escape it, symlinks included) and is renamed to dst
// only once the layer digest has been verified.
func SaveDir(what string, img v1.Image, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s already exists", dst)
	}
	layer, err := onlyLayer(what, img)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rc, err := openVerified(what, layer)
	if err != nil {
		return err
	}
	err = extractTar(rc, tmp)
	if err == nil {
		// Drain the tar padding so the digest check at EOF runs.
		_, err = io.Copy(io.Discard, rc)
	}
	rc.Close()
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// PullLayout is Client.PullLayout with a Client made of opts.
func PullLayout(ctx context.Context, ref name.Reference, dir string, opts ...Option) (name.Digest, error) {
	c, err := New(opts...)
	if err != nil {
		return name.Digest{}, err
	}
	return c.PullLayout(ctx, ref, dir)
}

// PullLayout fetches the image or index at ref into an OCI image layout at dir.
func (c *Client) PullLayout(ctx context.Context, ref name.Reference, dir string) (name.Digest, error) {
	o := c.o
	ref, err := bind(ref, o)
	if err != nil {
		return name.Digest{}, err
	}
	reg := ref.Context().RegistryStr()
	desc, err := remote.Get(ref, c.remoteOptions(ctx)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("pulling %s: %w", ref, registryError(reg, err))
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return name.Digest{}, err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = p.AppendIndex(idx)
		}
		if err != nil {
			return name.Digest{}, fmt.Errorf("pulling %s: %w", ref, registryError(reg, err))
		}
	} else {
		img, err := desc.Image()
		if err == nil {
			err = p.AppendImage(img)
		}
		if err != nil {
			return name.Digest{}, fmt.Errorf("pulling %s: %w", ref, registryError(reg, err))
		}
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

func onlyLayer(what string, img v1.Image) (v1.Layer, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if len(layers) != 1 {
		return nil, fmt.Errorf("%w: %s has %d layers, want 1", ErrArtifact, what, len(layers))
	}
	return layers[0], nil
}

// openVerified opens a layer's blob and checks its digest and size at EOF
// itself, so tampering is reported as ErrBlobDigest whichever layer of the
// stack notices first.
func openVerified(what string, l v1.Layer) (io.ReadCloser, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	size, err := l.Size()
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", what, registryError(registryOf(what), err))
	}
	return &verifyingReader{rc: rc, h: sha256.New(), want: d, size: size, ref: what}, nil
}

type verifyingReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	n    int64
	want v1.Hash
	size int64
	ref  string // what is read, for messages
	err  error
}

// registryOf returns the registry of a reference string, or "" when what is
// not a reference (a decrypted in-memory image).
func registryOf(what string) string {
	if r, err := name.ParseReference(what); err == nil {
		return r.Context().RegistryStr()
	}
	return ""
}

func (v *verifyingReader) Read(b []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(b)
	v.h.Write(b[:n])
	v.n += int64(n)
	if err == nil && v.n > v.size {
		err = io.EOF
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			// The layer below failed first (go-containerregistry's digest
			// check of the blob, a decrypting layer's HMAC, the network):
			// report that, not the short read it caused here.
			if errors.Is(err, ErrBlobDigest) || strings.Contains(err.Error(), "error verifying sha256 checksum") {
				v.err = fmt.Errorf("%w: %s: blob %s: %w", ErrBlobDigest, v.ref, v.want, err)
			} else if re := registryError(registryOf(v.ref), err); errors.Is(re, ErrUnreachable) || errors.Is(re, ErrRegistryAuth) || errors.Is(re, ErrNotFound) {
				v.err = fmt.Errorf("pulling %s: %w", v.ref, re)
			} else {
				v.err = fmt.Errorf("pulling %s: %w", v.ref, err)
			}
			return n, v.err
		}
		if v.n != v.size {
			v.err = fmt.Errorf("%w: %s: blob %s: got %d bytes, want %d", ErrBlobDigest, v.ref, v.want, v.n, v.size)
		} else if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			v.err = fmt.Errorf("%w: %s: blob %s has digest sha256:%s", ErrBlobDigest, v.ref, v.want, got)
		} else if errors.Is(err, io.EOF) {
			v.err = io.EOF
		} else {
			v.err = fmt.Errorf("pulling %s: %w", v.ref, registryError(registryOf(v.ref), err))
		}
		return n, v.err
	}
	return n, nil
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

// extractTar writes a tar stream under dir through os.Root.
func extractTar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%w: tar entry %q escapes the directory", ErrArtifact, h.Name)
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(f, tr, buf)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: tar entry %q has unsupported type %q", ErrArtifact, h.Name, h.Typeflag)
		}
	}
}

// Delete is Client.Delete with a Client made of opts.
func Delete(ctx context.Context, ref name.Digest, opts ...Option) error {
	c, err := New(opts...)
	if err != nil {
		return err
	}
	return c.Delete(ctx, ref)
}

// Delete removes the manifest at ref from its registry (blobs are left to the
// registry's garbage collection). Registries may refuse deletion.
func (c *Client) Delete(ctx context.Context, ref name.Digest) error {
	o := c.o
	d, err := bindDigest(ref, o)
	if err != nil {
		return err
	}
	if err := remote.Delete(d, c.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("deleting %s: %w", ref, registryError(ref.RegistryStr(), err))
	}
	return nil
}

// PullManifest reads the manifest at ref once and returns it as an image
// or, for a multi-platform index, as the index (the other is nil): unlike
// Pull, it never picks one child of an index. go-containerregistry checks
// the manifest against ref's digest, and each child against its own when
// the index's children are read.
func (c *Client) PullManifest(ctx context.Context, ref name.Digest) (v1.Image, v1.ImageIndex, error) {
	r, err := bind(ref, c.o)
	if err != nil {
		return nil, nil, err
	}
	reg := r.Context().RegistryStr()
	desc, err := remote.Get(r, c.remoteOptions(ctx)...)
	if err != nil {
		return nil, nil, fmt.Errorf("pulling %s: %w", r, registryError(reg, err))
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, nil, fmt.Errorf("pulling %s: %w", r, registryError(reg, err))
		}
		return nil, idx, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, nil, fmt.Errorf("pulling %s: %w", r, registryError(reg, err))
	}
	return img, nil, nil
}

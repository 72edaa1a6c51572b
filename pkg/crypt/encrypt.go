package crypt

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/containers/ocicrypt/blockcipher"
	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/keywrap/jwe"
	jose "github.com/go-jose/go-jose/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/stepseal/stepseal/pkg/policy"
)

// EncryptFor encrypts every layer of img to exactly the platforms that pol's
// rule for ref names, and to no one else: there is no way to pass another
// key. It fails with policy.ErrNoRule when no rule covers ref (fail closed),
// returns img unchanged when the rule makes the artifact public
// (encrypt: false), and refuses an image that is already encrypted (see
// Rotate), an index, or foreign layers.
//
// Each layer gets a fresh AES-256 content key and nonce, wrapped in one JWE
// (ocicrypt's key wrapper) with one recipient per platform whose "kid" is the
// platform key's policy.Fingerprint. Docker manifests become OCI manifests.
//
// Encryption is lazy and streamed: a layer's Compressed() encrypts while it
// is read (plaintext SHA-256, AES-CTR, HMAC, ciphertext SHA-256 in pipelined
// goroutines, memory bounded by a few 1 MiB chunks), and its digest and
// annotations are known at the end of that read. Digest() before any read
// costs one extra encryption pass; the content key and nonce are fixed per
// layer, so every pass yields the same ciphertext, and a source that changes
// between passes is an error (raised at the end of the pass: bytes streamed
// before it reused the key stream, so sources must be immutable — registry
// blobs, files and go-containerregistry layers are). The manifest needs
// every layer's digest.
func EncryptFor(ctx context.Context, pol *policy.Policy, ref string, img v1.Image) (v1.Image, error) {
	rule, err := pol.Rule(ref)
	if err != nil {
		return nil, err
	}
	if !rule.Encrypt {
		return img, nil
	}
	if len(rule.Platforms) == 0 {
		return nil, fmt.Errorf("%w: rule %q of policy %q for %s says encrypt but names no platform", policy.ErrInvalid, rule.Match, pol.Name, ref)
	}
	jwks := make([][]byte, len(rule.Platforms))
	for i, p := range rule.Platforms {
		alg, err := policy.KeyAlgorithm(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%w: platform %q: %w", ErrUnsupported, p.Name, err)
		}
		jwks[i], err = json.Marshal(jose.JSONWebKey{Key: p.PublicKey, KeyID: p.Fingerprint, Algorithm: string(alg), Use: "enc"})
		if err != nil {
			return nil, fmt.Errorf("%w: platform %q: %w", ErrUnsupported, p.Name, err)
		}
	}
	return encryptImage(ctx, img, jwks)
}

func encryptImage(ctx context.Context, img v1.Image, jwks [][]byte) (v1.Image, error) {
	tmpl, rawConfig, err := manifestOf(img)
	if err != nil {
		return nil, err
	}
	src, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(src) != len(tmpl.Layers) {
		return nil, fmt.Errorf("%w: %d layers but %d layer descriptors", ErrUnsupported, len(src), len(tmpl.Layers))
	}
	ec := &config.EncryptConfig{Parameters: map[string][][]byte{"pubkeys": jwks}}
	layers := make([]describedLayer, len(src))
	for i, l := range src {
		d := tmpl.Layers[i]
		mt, err := ociLayerType(d.MediaType)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
		}
		el := &encLayer{ctx: ctx, src: l, desc: d, mediaType: mt + encryptedSuffix, ec: ec}
		el.key = make([]byte, 32)
		el.nonce = make([]byte, 16)
		if _, err := io.ReadFull(rand.Reader, el.key); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(rand.Reader, el.nonce); err != nil {
			return nil, err
		}
		layers[i] = el
	}
	return newImage(tmpl, rawConfig, layers)
}

// encLayer is one layer encrypted on the fly.
type encLayer struct {
	ctx        context.Context
	src        v1.Layer
	desc       v1.Descriptor // plaintext descriptor
	mediaType  types.MediaType
	ec         *config.EncryptConfig
	key, nonce []byte

	pass sync.Mutex // serializes Digest()'s own pass
	mu   sync.Mutex
	done bool
	// known after the first complete pass
	cipher      v1.Hash
	annotations map[string]string
}

func (l *encLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// Size is the plaintext size: AES-CTR preserves length and ocicrypt keeps
// the HMAC in an annotation.
func (l *encLayer) Size() (int64, error) { return l.desc.Size, nil }

// DiffID is the plaintext's: an encrypted image keeps its config (and its
// rootfs.diff_ids) in the clear.
func (l *encLayer) DiffID() (v1.Hash, error) { return l.src.DiffID() }

func (l *encLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("%w: an encrypted layer has no uncompressed form", ErrUnsupported)
}

func (l *encLayer) Digest() (v1.Hash, error) {
	if err := l.ensure(); err != nil {
		return v1.Hash{}, err
	}
	return l.cipher, nil
}

func (l *encLayer) Descriptor() (*v1.Descriptor, error) {
	if err := l.ensure(); err != nil {
		return nil, err
	}
	d := l.desc
	d.MediaType = l.mediaType
	d.Digest = l.cipher
	d.Annotations = withoutEncAnnotations(l.desc.Annotations)
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	for k, v := range l.annotations {
		d.Annotations[k] = v
	}
	d.Data = nil
	return &d, nil
}

// ensure runs one encryption pass, discarding the ciphertext, unless one has
// completed already.
func (l *encLayer) ensure() error {
	l.pass.Lock()
	defer l.pass.Unlock()
	l.mu.Lock()
	done := l.done
	l.mu.Unlock()
	if done {
		return nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// Compressed streams the ciphertext. Stages: SHA-256 of the plaintext;
// ocicrypt's AES-256-CTR + HMAC-SHA256 cipher in place; SHA-256 of the
// ciphertext. At the end the content key, nonce and plaintext digest are
// wrapped for the recipients (first pass) or the pass is checked against the
// first one.
func (l *encLayer) Compressed() (io.ReadCloser, error) {
	src, err := l.src.Compressed()
	if err != nil {
		return nil, err
	}
	bc, err := blockcipher.NewAESCTRLayerBlockCipher(256)
	if err != nil {
		src.Close()
		return nil, err
	}
	feed := &feeder{}
	enc, fin, err := bc.Encrypt(feed, blockcipher.LayerBlockCipherOptions{Private: blockcipher.PrivateLayerBlockCipherOptions{
		SymmetricKey:  l.key,
		CipherOptions: map[string][]byte{"nonce": l.nonce},
	}})
	if err != nil {
		src.Close()
		return nil, err
	}
	plainH, cipherH := sha256.New(), sha256.New()
	var n int64
	stages := []func([]byte) error{
		func(b []byte) error { n += int64(len(b)); plainH.Write(b); return nil },
		func(b []byte) error { return feed.transform(enc, b) },
		func(b []byte) error { cipherH.Write(b); return nil },
	}
	onEOF := func() error {
		if err := feed.finish(enc); err != nil {
			return err
		}
		opts, err := fin()
		if err != nil {
			return err
		}
		return l.finish(opts, n, sum(plainH), sum(cipherH))
	}
	return newPipeline(l.ctx, src, stages, onEOF), nil
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

func (l *encLayer) finish(opts blockcipher.LayerBlockCipherOptions, n int64, plain, cipher v1.Hash) error {
	if n != l.desc.Size {
		return fmt.Errorf("%w: layer %s: read %d bytes, descriptor says %d", ErrDigest, l.desc.Digest, n, l.desc.Size)
	}
	if plain != l.desc.Digest {
		return fmt.Errorf("%w: layer %s: plaintext read has digest %s", ErrDigest, l.desc.Digest, plain)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		if cipher != l.cipher {
			return fmt.Errorf("%w: layer %s: ciphertext %s differs from the first pass %s", ErrDigest, l.desc.Digest, cipher, l.cipher)
		}
		return nil
	}
	// ocicrypt records the plaintext digest in the private options, which
	// only recipients can read.
	opts.Private.Digest = digest.Digest(plain.String())
	opts.Public.CipherType = blockcipher.AES256CTR
	priv, err := json.Marshal(opts.Private)
	if err != nil {
		return err
	}
	pub, err := json.Marshal(opts.Public)
	if err != nil {
		return err
	}
	wrapped, err := jwe.NewKeyWrapper().WrapKeys(l.ec, priv)
	if err != nil {
		return fmt.Errorf("%w: wrapping the content key: %w", ErrUnsupported, err)
	}
	if len(wrapped) == 0 {
		return errors.New("no recipient to wrap the content key for")
	}
	l.annotations = map[string]string{
		annotationJWE:    base64.StdEncoding.EncodeToString(wrapped),
		annotationPubOpt: base64.StdEncoding.EncodeToString(pub),
	}
	l.cipher, l.done = cipher, true
	return nil
}

// feeder lets ocicrypt's pull-style cipher work on one chunk in place:
// the cipher reads the chunk from the feeder into the same buffer, XORs the
// key stream into it and MACs it.
type feeder struct {
	b   []byte
	eof bool
}

func (f *feeder) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		if f.eof {
			return 0, io.EOF
		}
		return 0, io.ErrNoProgress
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

func (f *feeder) transform(r io.Reader, b []byte) error {
	f.b = b
	n, err := r.Read(b)
	if err != nil || n != len(b) {
		return fmt.Errorf("layer cipher: %d of %d bytes: %v", n, len(b), err)
	}
	return nil
}

// finish makes the cipher see the end of the stream, which completes its MAC.
func (f *feeder) finish(r io.Reader) error {
	f.b, f.eof = nil, true
	var one [1]byte
	if n, err := r.Read(one[:]); n != 0 || err != io.EOF {
		return fmt.Errorf("layer cipher did not end: %d, %v", n, err)
	}
	return nil
}

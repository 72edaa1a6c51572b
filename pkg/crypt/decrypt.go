package crypt

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containers/ocicrypt/blockcipher"
	jose "github.com/go-jose/go-jose/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Decrypt returns img with every encrypted layer decrypted with key
// (*rsa.PrivateKey or *ecdsa.PrivateKey, see ParsePrivateKey); plaintext
// layers pass through. Content keys are unwrapped at once: a key that opens
// no recipient entry of a layer is ErrNotRecipient. An entry labeled with
// this key's fingerprint that the key cannot open, or an entry it opens that
// is labeled with another key, is ErrRecipients (a relabeled recipient).
//
// Layers decrypt while streamed. ocicrypt checks the ciphertext HMAC only at
// the end, and its DecryptLayer returns no digest, so each layer's plaintext
// is hashed here and compared with the digest recorded in the encrypted
// private options: either mismatch fails the read at its end with ErrDigest.
// As with any streamed decryption, bytes read before that end are not yet
// authenticated; write them somewhere temporary until the read succeeds.
func Decrypt(ctx context.Context, img v1.Image, key crypto.PrivateKey) (v1.Image, error) {
	pub, err := publicOf(key)
	if err != nil {
		return nil, err
	}
	fp, err := policy.Fingerprint(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	tmpl, rawConfig, err := manifestOf(img)
	if err != nil {
		return nil, err
	}
	layers := make([]describedLayer, len(m.Layers))
	for i, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		if !isEncrypted(d.MediaType) {
			layers[i] = plainLayer{Layer: l, desc: d}
			continue
		}
		opts, err := unwrap(d, key, fp)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
		}
		plain, err := v1.NewHash(string(opts.Private.Digest))
		if err != nil {
			return nil, fmt.Errorf("%w: layer %d (%s): recorded plaintext digest %q: %w", ErrMalformed, i, d.Digest, opts.Private.Digest, err)
		}
		out := d
		out.MediaType = types.MediaType(strings.TrimSuffix(string(d.MediaType), encryptedSuffix))
		out.Digest = plain
		out.Annotations = withoutEncAnnotations(d.Annotations)
		layers[i] = &decLayer{ctx: ctx, src: l, desc: out, opts: opts, index: i}
	}
	return newImage(tmpl, rawConfig, layers)
}

// unwrap opens the layer's recipient entries with key and returns ocicrypt's
// layer options (content key, nonce, plaintext digest, HMAC).
func unwrap(d v1.Descriptor, key crypto.PrivateKey, fp string) (blockcipher.LayerBlockCipherOptions, error) {
	var opts blockcipher.LayerBlockCipherOptions
	ann := d.Annotations[annotationJWE]
	if ann == "" {
		return opts, fmt.Errorf("%w: no JWE recipient (only JWE key wrapping is supported)", ErrNotRecipient)
	}
	slots, err := jweSlots(ann)
	if err != nil {
		return opts, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var (
		priv   []byte
		opened int
	)
	for _, s := range slots {
		plain, err := decryptSlot(s, key)
		switch {
		case err != nil && s.kid == fp:
			return opts, fmt.Errorf("%w: a recipient entry is labeled with this key (%s) but does not open with it: relabeled recipient", ErrRecipients, fp)
		case err != nil:
			continue
		case s.kid != "" && s.kid != fp:
			return opts, fmt.Errorf("%w: the recipient entry labeled %s opens with key %s: relabeled recipient", ErrRecipients, s.kid, fp)
		case priv != nil && !bytes.Equal(priv, plain):
			return opts, fmt.Errorf("%w: two recipient entries for key %s carry different content keys", ErrRecipients, fp)
		}
		priv = plain
		opened++
	}
	if priv == nil {
		return opts, fmt.Errorf("%w: key %s opens none of the %d recipient entries", ErrNotRecipient, fp, len(slots))
	}
	if err := json.Unmarshal(priv, &opts.Private); err != nil {
		return opts, fmt.Errorf("%w: private options: %w", ErrMalformed, err)
	}
	pubB64 := d.Annotations[annotationPubOpt]
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || pubB64 == "" {
		return opts, fmt.Errorf("%w: missing or malformed %s", ErrMalformed, annotationPubOpt)
	}
	if err := json.Unmarshal(pub, &opts.Public); err != nil {
		return opts, fmt.Errorf("%w: public options: %w", ErrMalformed, err)
	}
	if opts.Public.CipherType != blockcipher.AES256CTR {
		return opts, fmt.Errorf("%w: cipher %q", ErrUnsupported, opts.Public.CipherType)
	}
	if len(opts.Private.SymmetricKey) != 32 || len(opts.Private.CipherOptions["nonce"]) != 16 || len(opts.Public.Hmac) != sha256.Size {
		return opts, fmt.Errorf("%w: layer options", ErrMalformed)
	}
	return opts, nil
}

type plainLayer struct {
	v1.Layer
	desc v1.Descriptor
}

func (l plainLayer) Descriptor() (*v1.Descriptor, error) { d := l.desc; return &d, nil }

type decLayer struct {
	ctx   context.Context
	src   v1.Layer
	desc  v1.Descriptor
	opts  blockcipher.LayerBlockCipherOptions
	index int
}

func (l *decLayer) Descriptor() (*v1.Descriptor, error) { d := l.desc; return &d, nil }
func (l *decLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *decLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *decLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *decLayer) DiffID() (v1.Hash, error)            { return l.src.DiffID() }

// Uncompressed decompresses the verified plaintext stream (gzip or zstd, as
// go-containerregistry detects it).
func (l *decLayer) Uncompressed() (io.ReadCloser, error) {
	ul, err := partial.CompressedToLayer(compressedOnly{l})
	if err != nil {
		return nil, err
	}
	return ul.Uncompressed()
}

// compressedOnly hides decLayer's other methods so partial builds the
// uncompressed view from the compressed stream.
type compressedOnly struct{ l *decLayer }

func (c compressedOnly) Digest() (v1.Hash, error)            { return c.l.Digest() }
func (c compressedOnly) Compressed() (io.ReadCloser, error)  { return c.l.Compressed() }
func (c compressedOnly) Size() (int64, error)                { return c.l.Size() }
func (c compressedOnly) MediaType() (types.MediaType, error) { return c.l.MediaType() }

// Compressed streams the plaintext: ocicrypt's AES-CTR + HMAC decryption
// reads the ciphertext in one goroutine, SHA-256 of the plaintext runs in
// the next.
func (l *decLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.src.Compressed()
	if err != nil {
		return nil, err
	}
	bc, err := blockcipher.NewAESCTRLayerBlockCipher(256)
	if err != nil {
		rc.Close()
		return nil, err
	}
	track := &trackErr{r: rc}
	dec, _, err := bc.Decrypt(track, l.opts)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%w: layer %d: %w", ErrUnsupported, l.index, err)
	}
	h := sha256.New()
	var n int64
	stages := []func([]byte) error{func(b []byte) error { n += int64(len(b)); h.Write(b); return nil }}
	onEOF := func() error {
		if got := sum(h); got != l.desc.Digest || n != l.desc.Size {
			return fmt.Errorf("%w: layer %d: decrypted %d bytes with digest %s, encryption recorded %d bytes %s", ErrDigest, l.index, n, got, l.desc.Size, l.desc.Digest)
		}
		return nil
	}
	return newPipeline(l.ctx, readCloser{&hmacErr{r: dec, track: track, index: l.index}, rc}, stages, onEOF), nil
}

// trackErr remembers whether the ciphertext source itself failed, so an
// error from ocicrypt's reader that is not the source's is its HMAC verdict.
type trackErr struct {
	r   io.Reader
	err error
}

func (t *trackErr) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

type hmacErr struct {
	r     io.Reader
	track *trackErr
	index int
}

func (h *hmacErr) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err != nil && err != io.EOF && h.track.err == nil {
		return n, fmt.Errorf("%w: layer %d: ciphertext authentication (HMAC-SHA256) failed: layer tampered", ErrDigest, h.index)
	}
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

func publicOf(key crypto.PrivateKey) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey, nil
	case *ecdsa.PrivateKey:
		return &k.PublicKey, nil
	}
	return nil, fmt.Errorf("%w: decryption key of type %T (want RSA or EC)", ErrUnsupported, key)
}

// ParsePrivateKey parses a platform's private key: PEM (PKCS#8, PKCS#1,
// SEC 1, or a cosign-encrypted key with pass) or a private JWK. The key
// material never appears in errors.
func ParsePrivateKey(data []byte, pass signing.PassFunc) (crypto.PrivateKey, error) {
	data = bytes.TrimSpace(data)
	var key any
	if len(data) > 0 && data[0] == '{' {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%w: JWK private key does not parse", ErrMalformed)
		}
		if k.IsPublic() {
			return nil, fmt.Errorf("%w: JWK is a public key, decryption needs the private key", ErrUnsupported)
		}
		key = k.Key
	} else {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%w: private key is neither PEM nor JWK", ErrMalformed)
		}
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			key, err = signing.ParsePrivateKeyPEM(data, pass)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: private key (PEM %s): %w", ErrUnsupported, block.Type, err)
		}
	}
	if _, err := publicOf(key); err != nil {
		return nil, err
	}
	return key, nil
}

// LoadPrivateKey reads a private key file (see ParsePrivateKey).
func LoadPrivateKey(path string, pass signing.PassFunc) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

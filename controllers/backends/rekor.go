package backends

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/rekor"
)

// KeyedAttacher is an ImageAttacher that needs the public key of the
// envelope's signer: the "rekor" backend logs the signature with it.
type KeyedAttacher interface {
	ImageAttacher
	AttachSigned(ctx context.Context, image string, env *dsse.Envelope, pub crypto.PublicKey) error
}

// AttachImage gives a signed envelope to b's ImageAttacher (b must have
// one), with its signer's public key when the attacher takes one
// (KeyedAttacher).
func (b Backend) AttachImage(ctx context.Context, image string, env *dsse.Envelope, pub crypto.PublicKey) error {
	if k, ok := b.Images.(KeyedAttacher); ok {
		return k.AttachSigned(ctx, image, env, pub)
	}
	return b.Images.Attach(ctx, image, env)
}

// ErrRekorNeedsKey: the "rekor" backend was given an envelope without its
// signer's key (a caller not going through Attach). reject.ErrMissing.
var ErrRekorNeedsKey = reject.Sentinel(reject.ErrMissing, "the rekor backend needs the signer's public key")

// Rekor is the "rekor" backend's ImageAttacher, Chains' transparency
// option for Rekor v2: the provenance (or VSA) of each image is logged in
// a rekor-tiles log (pkg/rekor: hashedrekord of the DSSE PAE, the answer
// verified against the log's key from TrustedRoot) and the resulting
// Sigstore bundle attached to the image as an OCI referrer. One Rekor is
// opened per reconcile; it logs each envelope once, however many images
// it attaches to, and reads the trusted root on first use (a rotated
// file reaches the next reconcile). Opening it contacts nothing.
type Rekor struct {
	// URL is the log's write URL, TilesURL where its tiles are read (""
	// is URL), TrustedRoot the trusted_root.json file naming the log.
	URL, TilesURL, TrustedRoot string
	// Insecure allows plain HTTP to loopback registries (tests).
	Insecure bool

	once   sync.Once
	pub    *rekor.Publisher
	client *oci.Client
	err    error

	mu      sync.Mutex
	bundles map[string][]byte // by envelope and key
}

// Attach implements ImageAttacher; the rekor backend needs the signer's
// key, so it refuses (use Backend.AttachImage).
func (r *Rekor) Attach(context.Context, string, *dsse.Envelope) error {
	return fmt.Errorf("%w (log %s)", ErrRekorNeedsKey, r.URL)
}

// AttachSigned logs env's signature by pub (once per Rekor) and attaches
// the verified bundle to image ("repository@sha256:<hex>").
func (r *Rekor) AttachSigned(ctx context.Context, image string, env *dsse.Envelope, pub crypto.PublicKey) error {
	r.once.Do(r.open)
	if r.err != nil {
		return r.err
	}
	ref, err := r.client.ParseDigest(image)
	if err != nil {
		return err
	}
	b, err := r.bundle(ctx, env, pub)
	if err != nil {
		return err
	}
	return r.client.AttachBundle(ctx, ref, b)
}

func (r *Rekor) open() {
	data, err := limited.ReadFile(r.TrustedRoot, 1<<20)
	if err != nil {
		r.err = fmt.Errorf("rekor trusted root: %w", err)
		return
	}
	l, err := rekor.LogFromTrustedRoot(data, r.URL)
	if err != nil {
		r.err = fmt.Errorf("rekor trusted root %s: %w", r.TrustedRoot, err)
		return
	}
	l.TilesURL = r.TilesURL
	if r.pub, r.err = rekor.NewPublisher(l, 0); r.err != nil {
		return
	}
	var opts []oci.Option
	if r.Insecure {
		opts = append(opts, oci.WithInsecure())
	}
	r.client, r.err = oci.New(opts...)
}

// bundle is env's bundle, logged once per Rekor.
func (r *Rekor) bundle(ctx context.Context, env *dsse.Envelope, pub crypto.PublicKey) ([]byte, error) {
	if env == nil {
		return nil, errors.New("rekor backend: no envelope")
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", env.PayloadType, env.Payload)
	for _, s := range env.Signatures {
		fmt.Fprintf(h, "%s\x00", s.Sig)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h.Write(der)
	key := hex.EncodeToString(h.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.bundles[key]; ok {
		return b, nil
	}
	p, err := r.pub.Publish(ctx, env, pub)
	if err != nil {
		return nil, err
	}
	if r.bundles == nil {
		r.bundles = map[string][]byte{}
	}
	r.bundles[key] = p.Bundle
	return p.Bundle, nil
}

package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/stepseal/stepseal/controllers/backends"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Secret keys of the signing Secret, the ones Tekton Chains' signing-secrets uses.
const (
	SecretKeyCosignKey      = "cosign.key"
	SecretKeyCosignPassword = "cosign.password"
)

// Backend is one opened backend (see backends.Backend).
type Backend = backends.Backend

// Targets are the backends that store (not only attach to images), as
// pkg/seal puts entries into them.
func Targets(bs []Backend) []seal.Target {
	var out []seal.Target
	for _, b := range bs {
		if b.Store != nil {
			out = append(out, seal.Target{Name: b.Name, Store: b.Store})
		}
	}
	return out
}

// Signing is what every Kind's Attest signs with and stores into: the
// signer of a namespace and the configured backends, resolved through the
// process's Shared (Common.Signing makes one).
type Signing struct {
	Secrets         corelisters.SecretLister // Secrets of SystemNamespace
	SystemNamespace string
	// Shared is the process's signer cache and open stores (NewShared);
	// without it Signer and Backends (unless OpenBackends) fail.
	Shared *Shared
	// OpenBackends opens the backends of a Config; nil means the configured
	// ones. Tests set it.
	OpenBackends func(*settings.Config) ([]Backend, error)
}

// Signer returns the signer for runs of namespace, the first that is
// configured of: the KMS key signer.kms.<namespace>; the Secret
// "<signer.secret>-<namespace>"; the KMS key signer.kms; the Secret
// "<signer.secret>" (Secrets in the controller's namespace). Signers are
// cached in s.Shared (see signerCache).
func (s *Signing) Signer(ctx context.Context, namespace string, cfg *settings.Config) (signing.Signer, error) {
	if s.Shared == nil {
		return nil, errNoShared
	}
	keys := &s.Shared.signers
	if uri := cfg.NamespaceKMS[namespace]; uri != "" {
		return keys.kms(ctx, uri)
	}
	sec, err := s.Secrets.Secrets(s.SystemNamespace).Get(cfg.SignerSecret + "-" + namespace)
	if apierrors.IsNotFound(err) {
		if cfg.SignerKMS != "" {
			return keys.kms(ctx, cfg.SignerKMS)
		}
		sec, err = s.Secrets.Secrets(s.SystemNamespace).Get(cfg.SignerSecret)
	}
	if err != nil {
		return nil, fmt.Errorf("signing Secret %s/%s: %w", s.SystemNamespace, cfg.SignerSecret, err)
	}
	keyPEM := sec.Data[SecretKeyCosignKey]
	if len(keyPEM) == 0 {
		return nil, fmt.Errorf("signing Secret %s/%s has no %s", sec.Namespace, sec.Name, SecretKeyCosignKey)
	}
	sg, err := keys.secret(keyPEM, sec.Data[SecretKeyCosignPassword])
	if err != nil {
		// The error names the Secret, never its content.
		return nil, fmt.Errorf("signing Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return sg, nil
}

// SystemSigner returns the controller's own signer for a purpose that is
// never a tenant's (the VSA verifier key): the KMS key kms when set, else
// the Secret named secret in the system namespace only (cosign.key,
// cosign.password; no "<secret>-<namespace>" variant). Cached like Signer.
func (s *Signing) SystemSigner(ctx context.Context, secret, kms string) (signing.Signer, error) {
	if s.Shared == nil {
		return nil, errNoShared
	}
	keys := &s.Shared.signers
	if kms != "" {
		return keys.kms(ctx, kms)
	}
	sec, err := s.Secrets.Secrets(s.SystemNamespace).Get(secret)
	if err != nil {
		return nil, fmt.Errorf("key Secret %s/%s: %w", s.SystemNamespace, secret, err)
	}
	keyPEM := sec.Data[SecretKeyCosignKey]
	if len(keyPEM) == 0 {
		return nil, fmt.Errorf("key Secret %s/%s has no %s", sec.Namespace, sec.Name, SecretKeyCosignKey)
	}
	sg, err := keys.secret(keyPEM, sec.Data[SecretKeyCosignPassword])
	if err != nil {
		return nil, fmt.Errorf("key Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return sg, nil
}

// Backends opens the backends cfg names, each the way its row of
// settings.BackendKinds says (OpenBackends when set). Stores are opened once
// per Shared and path, and shared by every controller of the process.
func (s *Signing) Backends(ctx context.Context, cfg *settings.Config) ([]Backend, error) {
	if s.OpenBackends != nil {
		return s.OpenBackends(cfg)
	}
	if s.Shared == nil {
		return nil, errNoShared
	}
	var out []Backend
	for _, name := range cfg.Backends {
		kind, ok := settings.LookupBackend(name)
		if !ok {
			return nil, fmt.Errorf("%w: unknown backend %q", settings.ErrInvalid, name)
		}
		b, err := kind.Open(ctx, cfg, &s.Shared.stores)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// LogCheckpoint is the signed checkpoint of the log a run's log index
// refers to (seal.LogCheckpoint over cfg's backends), for the run's
// annotation; "" when no backend has one.
func (s *Signing) LogCheckpoint(ctx context.Context, cfg *settings.Config) (string, error) {
	bs, err := s.Backends(ctx, cfg)
	if err != nil {
		return "", err
	}
	cp, err := seal.LogCheckpoint(ctx, Targets(bs))
	return string(cp), err
}

// signerCache caches signers for the whole process (in Shared: every
// controller shares it): cosign keys by the digest of the key file and
// password, so cosign's deliberately slow scrypt (32 MiB, ~0.2 CPU-s) runs
// once per key, not once per controller, worker or Secret version; KMS
// signers by URI, so the KMS is asked for the public key once. One
// decryption or KMS set-up runs at a time. The zero value is empty.
type signerCache struct {
	decrypt sync.Mutex // held while decrypting or setting up a KMS client
	mu      sync.Mutex
	byKey   map[string]signing.Signer
	// bad remembers keys that failed to decrypt (wrong password, damaged
	// key): the same bytes fail the same way, so retries skip the scrypt.
	bad map[string]error
}

// maxCachedSigners bounds the cache; past it, it starts over.
const maxCachedSigners = 256

func (c *signerCache) get(k string) (signing.Signer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[k], c.bad[k]
}

// put caches s, or err for content that cannot make a signer.
func (c *signerCache) put(k string, s signing.Signer, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || len(c.byKey)+len(c.bad) >= maxCachedSigners {
		c.byKey, c.bad = map[string]signing.Signer{}, map[string]error{}
	}
	if err != nil {
		c.bad[k] = err
	} else {
		c.byKey[k] = s
	}
}

func (c *signerCache) secret(keyPEM, password []byte) (signing.Signer, error) {
	h := sha256.New()
	h.Write(keyPEM)
	h.Write([]byte{0})
	h.Write(password)
	k := "secret:" + hex.EncodeToString(h.Sum(nil))
	if s, err := c.get(k); s != nil || err != nil {
		return s, err
	}
	c.decrypt.Lock()
	defer c.decrypt.Unlock()
	if s, err := c.get(k); s != nil || err != nil {
		return s, err
	}
	key, err := signing.ParsePrivateKeyPEM(keyPEM, func(bool) ([]byte, error) { return password, nil })
	// scrypt's 32 MiB are garbage now. Collect them before the heap grows
	// to twice the size they made it (that doubled the controller's peak
	// memory under a burst), and give the pages back.
	debug.FreeOSMemory()
	var s signing.Signer
	if err == nil {
		s, err = signing.NewSigner(key)
	}
	c.put(k, s, err)
	return s, err
}

func (c *signerCache) kms(ctx context.Context, uri string) (signing.Signer, error) {
	k := "kms:" + uri
	if s, _ := c.get(k); s != nil {
		return s, nil
	}
	c.decrypt.Lock()
	defer c.decrypt.Unlock()
	if s, _ := c.get(k); s != nil {
		return s, nil
	}
	// KMS failures may be transient (network, credentials): not cached.
	s, err := signing.KMSSigner(ctx, uri)
	if err != nil {
		return nil, err
	}
	c.put(k, s, nil)
	return s, nil
}

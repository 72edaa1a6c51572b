package incluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"knative.dev/pkg/controller"
	certresources "knative.dev/pkg/webhook/certificates/resources"
)

// DefaultCertGrace is how long a server keeps its current certificate
// after the Secret holds a new one: the CA injector has meanwhile added the
// new CA to the webhook configurations' caBundle (next to the old one),
// and the apiserver has seen it, so no admission call fails on the switch.
const DefaultCertGrace = 10 * time.Second

// SecretCertificates serves the certificate of the Secret that
// knative.dev/pkg's certificates controller keeps (keys server-cert.pem,
// server-key.pem, ca-cert.pem), read from an informer's lister, so a
// rotation needs no restart. A new certificate is used Grace after it was
// first seen and once Trusted says its CA is in the webhook
// configurations (at once when there is no current one, or the current
// one expired); a Secret that does not parse keeps the last good
// certificate.
type SecretCertificates struct {
	Lister          corelisters.SecretLister
	Namespace, Name string
	// Grace: DefaultCertGrace when 0.
	Grace time.Duration
	// Trusted reports whether the apiserver was given caPEM (the
	// CAInjector's Injected); nil: always.
	Trusted func(caPEM []byte) bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu          sync.Mutex
	cur         *tls.Certificate
	curNotAfter time.Time
	seen        string // resourceVersion last parsed
	next        *tls.Certificate
	nextCA      []byte
	nextNotAft  time.Time
	nextSince   time.Time
}

// ErrNoServingCert: the Secret has no usable certificate yet (the
// certificates controller has not filled it).
var ErrNoServingCert = errors.New("no serving certificate in the Secret yet")

// GetCertificate is tls.Config.GetCertificate.
func (s *SecretCertificates) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	grace := s.Grace
	if grace <= 0 {
		grace = DefaultCertGrace
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := now()
	if sec, err := s.Lister.Secrets(s.Namespace).Get(s.Name); err == nil && sec.ResourceVersion != s.seen {
		if c, na, err := parseServingSecret(sec); err == nil {
			s.seen = sec.ResourceVersion
			if s.cur == nil || !bytes.Equal(c.Certificate[0], s.cur.Certificate[0]) {
				s.next, s.nextCA, s.nextNotAft, s.nextSince = c, sec.Data[certresources.CACert], na, t
			}
		}
	}
	trusted := s.Trusted == nil || (s.next != nil && s.Trusted(s.nextCA))
	if s.next != nil && (s.cur == nil || !t.Before(s.curNotAfter) || (t.Sub(s.nextSince) >= grace && trusted)) {
		s.cur, s.curNotAfter, s.next = s.next, s.nextNotAft, nil
	}
	if s.cur == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoServingCert, s.Namespace, s.Name)
	}
	return s.cur, nil
}

func parseServingSecret(sec *corev1.Secret) (*tls.Certificate, time.Time, error) {
	c, err := tls.X509KeyPair(sec.Data[certresources.ServerCert], sec.Data[certresources.ServerKey])
	if err != nil {
		return nil, time.Time{}, err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, time.Time{}, err
	}
	return &c, leaf.NotAfter, nil
}

// CAInjector keeps the CA of the certificates Secret in the caBundle of
// every webhook of the named Mutating- and ValidatingWebhookConfigurations
// whose clientConfig names Service. knative's resourcesemantics
// reconcilers would do this too, but they also rewrite each webhook's
// rules from their own types; stepseal's rules, selectors and exemptions
// are the shipped YAML's. The new CA goes first, followed by the CAs
// already in the bundle that are still valid (at most MaxCAs in all), so
// servers still presenting the previous certificate (SecretCertificates'
// grace) keep being trusted.
type CAInjector struct {
	Client          kubernetes.Interface
	Lister          corelisters.SecretLister
	Namespace, Name string // the certificates Secret
	Service         string // the webhooks' Service (in Namespace)
	Mutating        []string
	Validating      []string
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	injected atomic.Pointer[[]byte]
}

// Injected reports whether caPEM was, at the last reconcile, in the
// caBundle of every webhook of ours.
func (c *CAInjector) Injected(caPEM []byte) bool {
	p := c.injected.Load()
	return p != nil && bytes.Equal(*p, caPEM)
}

// MaxCAs bounds the CA certificates kept in a caBundle.
const MaxCAs = 3

var _ controller.Reconciler = (*CAInjector)(nil)

// Reconcile implements knative's controller.Reconciler (the key is
// ignored: there is one Secret).
func (c *CAInjector) Reconcile(ctx context.Context, _ string) error {
	sec, err := c.Lister.Secrets(c.Namespace).Get(c.Name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	ca := sec.Data[certresources.CACert]
	if _, err := parseCerts(ca); err != nil || len(ca) == 0 {
		return nil // the certificates controller has not filled it yet
	}
	var errs []error
	for _, n := range c.Mutating {
		errs = append(errs, c.patchMutating(ctx, n, ca))
	}
	for _, n := range c.Validating {
		errs = append(errs, c.patchValidating(ctx, n, ca))
	}
	err = errors.Join(errs...)
	if err == nil {
		c.injected.Store(&ca)
	}
	return err
}

func (c *CAInjector) ours(cc *admregv1.WebhookClientConfig) bool {
	return cc.Service != nil && cc.Service.Name == c.Service && cc.Service.Namespace == c.Namespace
}

func (c *CAInjector) patchMutating(ctx context.Context, name string, ca []byte) error {
	api := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	w, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("MutatingWebhookConfiguration %s: %w", name, err)
	}
	changed := false
	for i := range w.Webhooks {
		cc := &w.Webhooks[i].ClientConfig
		if b := c.bundle(cc.CABundle, ca); c.ours(cc) && !bytes.Equal(b, cc.CABundle) {
			cc.CABundle, changed = b, true
		}
	}
	if changed {
		_, err = api.Update(ctx, w, metav1.UpdateOptions{})
	}
	return err
}

func (c *CAInjector) patchValidating(ctx context.Context, name string, ca []byte) error {
	api := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	w, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("ValidatingWebhookConfiguration %s: %w", name, err)
	}
	changed := false
	for i := range w.Webhooks {
		cc := &w.Webhooks[i].ClientConfig
		if b := c.bundle(cc.CABundle, ca); c.ours(cc) && !bytes.Equal(b, cc.CABundle) {
			cc.CABundle, changed = b, true
		}
	}
	if changed {
		_, err = api.Update(ctx, w, metav1.UpdateOptions{})
	}
	return err
}

// bundle is ca followed by the still valid, distinct CAs of old.
func (c *CAInjector) bundle(old, ca []byte) []byte {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	out := bytes.TrimSpace(ca)
	out = append(append([]byte{}, out...), '\n')
	newCerts, _ := parseCerts(ca)
	seen := map[string]bool{}
	for _, nc := range newCerts {
		seen[string(nc.Raw)] = true
	}
	oldCerts, _ := parseCerts(old)
	n := len(newCerts)
	for _, oc := range oldCerts {
		if n >= MaxCAs || seen[string(oc.Raw)] || now().After(oc.NotAfter) {
			continue
		}
		seen[string(oc.Raw)] = true
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: oc.Raw})...)
		n++
	}
	return out
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

package incluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	certresources "knative.dev/pkg/webhook/certificates/resources"
)

func certSecret(t *testing.T, rv string, notAfter time.Time) *corev1.Secret {
	t.Helper()
	key, cert, ca, err := certresources.CreateCerts(context.Background(), "svc", "ns", notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "certs", ResourceVersion: rv},
		Data: map[string][]byte{certresources.ServerKey: key, certresources.ServerCert: cert, certresources.CACert: ca}}
}

// TestSecretCertificatesGrace: the first certificate is served at once; a
// rotated one only after the grace and once its CA is in the webhook
// configurations, or at once when the current one expired (trusted or
// not); a broken Secret keeps the last good certificate.
func TestSecretCertificatesGrace(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	now := time.Now()
	trusted := map[string]bool{}
	s := &SecretCertificates{Lister: corelisters.NewSecretLister(idx), Namespace: "ns", Name: "certs", Grace: 10 * time.Second, Now: func() time.Time { return now },
		Trusted: func(ca []byte) bool { return trusted[string(ca)] }}
	if _, err := s.GetCertificate(nil); !errors.Is(err, ErrNoServingCert) {
		t.Fatalf("no Secret: %v", err)
	}
	first := certSecret(t, "1", now.Add(48*time.Hour))
	_ = idx.Add(first)
	c1, err := s.GetCertificate(nil)
	if err != nil || !bytes.Equal(c1.Certificate[0], mustPair(t, first).Certificate[0]) {
		t.Fatalf("first certificate: %v", err)
	}
	second := certSecret(t, "2", now.Add(96*time.Hour))
	_ = idx.Update(second)
	if c, _ := s.GetCertificate(nil); !bytes.Equal(c.Certificate[0], c1.Certificate[0]) {
		t.Fatal("rotated certificate served before the grace")
	}
	now = now.Add(10 * time.Second)
	if c, _ := s.GetCertificate(nil); !bytes.Equal(c.Certificate[0], c1.Certificate[0]) {
		t.Fatal("rotated certificate served before its CA was in the webhook configurations")
	}
	trusted[string(second.Data[certresources.CACert])] = true
	c2, _ := s.GetCertificate(nil)
	if !bytes.Equal(c2.Certificate[0], mustPair(t, second).Certificate[0]) {
		t.Fatal("rotated certificate not served after the grace")
	}
	broken := second.DeepCopy()
	broken.ResourceVersion = "3"
	broken.Data[certresources.ServerKey] = []byte("not a key")
	_ = idx.Update(broken)
	now = now.Add(time.Minute)
	if c, _ := s.GetCertificate(nil); !bytes.Equal(c.Certificate[0], c2.Certificate[0]) {
		t.Fatal("a broken Secret replaced the last good certificate")
	}
	// The current certificate expired: the next one is used at once.
	third := certSecret(t, "4", now.Add(200*time.Hour))
	_ = idx.Update(third)
	now = now.Add(97 * time.Hour)
	if c, _ := s.GetCertificate(nil); !bytes.Equal(c.Certificate[0], mustPair(t, third).Certificate[0]) {
		t.Fatal("an expired certificate kept through the grace")
	}
}

func mustPair(t *testing.T, s *corev1.Secret) *tls.Certificate {
	t.Helper()
	c, _, err := parseServingSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCABundle: the new CA first, then the still valid old ones, at most
// MaxCAs, no duplicates; garbage in the old bundle is dropped.
func TestCABundle(t *testing.T) {
	now := time.Now()
	inj := &CAInjector{Now: func() time.Time { return now }}
	ca := func(d time.Duration) []byte { return certSecret(t, "", now.Add(d)).Data[certresources.CACert] }
	a, b, c, d := ca(time.Hour), ca(2*time.Hour), ca(3*time.Hour), ca(4*time.Hour)
	got := inj.bundle(nil, a)
	if certs, _ := parseCerts(got); len(certs) != 1 {
		t.Fatalf("fresh bundle: %d certificates", len(certs))
	}
	got = inj.bundle(got, b)
	got = inj.bundle(got, b) // idempotent
	if certs, _ := parseCerts(got); len(certs) != 2 || !bytes.HasPrefix(got, bytes.TrimSpace(b)) {
		t.Fatalf("after one rotation: %d certificates", len(certs))
	}
	got = inj.bundle(append(got, []byte("-----BEGIN GARBAGE-----\nxx\n-----END GARBAGE-----\n")...), c)
	got = inj.bundle(got, d)
	if certs, _ := parseCerts(got); len(certs) != MaxCAs {
		t.Fatalf("after three rotations: %d certificates, want %d", len(certs), MaxCAs)
	}
	now = now.Add(150 * time.Minute) // a and b expired
	got = inj.bundle(got, d)
	if certs, _ := parseCerts(got); len(certs) != 2 {
		t.Fatalf("expired CAs kept: %d certificates", len(certs))
	}
}

// FuzzCABundle: whatever a webhook configuration's caBundle holds, the
// merged bundle starts with the new CA and parses.
func FuzzCABundle(f *testing.F) {
	now := time.Now()
	key, cert, ca, err := certresources.CreateCerts(context.Background(), "svc", "ns", now.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca)
	f.Add(append(append([]byte{}, ca...), cert...))
	f.Add(key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	inj := &CAInjector{Now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, old []byte) {
		got := inj.bundle(old, ca)
		if !bytes.HasPrefix(got, bytes.TrimSpace(ca)) {
			t.Fatal("the new CA is not first")
		}
		certs, err := parseCerts(got)
		if err != nil || len(certs) == 0 || len(certs) > MaxCAs {
			t.Fatalf("%d certificates, %v", len(certs), err)
		}
	})
}

// TestCAInjector: the Secret's CA goes into our webhooks of both
// configurations (not into a webhook of another Service), and Injected
// says so only once that succeeded. (On the real apiserver:
// controllers/config/admission's TestInstallWebhook.)
func TestCAInjector(t *testing.T) {
	ctx := context.Background()
	svc := func(n string) admregv1.WebhookClientConfig {
		return admregv1.WebhookClientConfig{Service: &admregv1.ServiceReference{Namespace: "ns", Name: n}}
	}
	kube := fake.NewClientset(
		&admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Webhooks: []admregv1.MutatingWebhook{{Name: "m.x.y", ClientConfig: svc("svc")}}},
		&admregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Webhooks: []admregv1.ValidatingWebhook{
			{Name: "v.x.y", ClientConfig: svc("svc")}, {Name: "o.x.y", ClientConfig: svc("other")}}},
	)
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	inj := &CAInjector{Client: kube, Lister: corelisters.NewSecretLister(idx), Namespace: "ns", Name: "certs", Service: "svc",
		Mutating: []string{"cfg"}, Validating: []string{"cfg", "missing"}}
	sec := certSecret(t, "1", time.Now().Add(48*time.Hour))
	ca := sec.Data[certresources.CACert]
	_ = idx.Add(sec)
	if err := inj.Reconcile(ctx, ""); err == nil || !strings.Contains(err.Error(), "ValidatingWebhookConfiguration missing") {
		t.Fatalf("a missing configuration: %v", err)
	}
	if inj.Injected(ca) {
		t.Fatal("Injected although a configuration was not updated")
	}
	inj.Validating = []string{"cfg"}
	if err := inj.Reconcile(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if !inj.Injected(ca) || inj.Injected([]byte("another")) {
		t.Fatal("Injected does not name the CA just injected")
	}
	mw, _ := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "cfg", metav1.GetOptions{})
	vw, _ := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "cfg", metav1.GetOptions{})
	if !bytes.HasPrefix(mw.Webhooks[0].ClientConfig.CABundle, bytes.TrimSpace(ca)) || !bytes.HasPrefix(vw.Webhooks[0].ClientConfig.CABundle, bytes.TrimSpace(ca)) {
		t.Error("our webhooks lack the CA")
	}
	if len(vw.Webhooks[1].ClientConfig.CABundle) != 0 {
		t.Error("another Service's webhook was given our CA")
	}
}

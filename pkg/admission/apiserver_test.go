package admission

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// serveTLS serves h over HTTPS on 127.0.0.1 with a certificate from a
// fresh CA, and returns the URL and the CA bundle, as envtest points a
// real kube-apiserver at an out-of-cluster webhook.
func serveTLS(t *testing.T, h http.Handler) (string, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stepseal-admission-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// TestAPIServerCallsWebhook: a real kube-apiserver calls the handlers over
// TLS for Pods in an opted-in namespace: a tag is stored as its digest
// (W2), an unsigned image is refused with stepseal's message (W1), also on
// a dry run (W30), an UPDATE to an unsigned image (W18) and an ephemeral
// container added through pods/ephemeralcontainers (W17) are refused, and a
// namespace without the label is untouched.
func TestAPIServerCallsWebhook(t *testing.T) {
	e := newEnv(t)
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")
	d := e.decider(nil)
	mux := http.NewServeMux()
	mux.Handle("/validate", ValidatingHandler(d))
	mux.Handle("/mutate", MutatingHandler(d))
	url, caPEM := serveTLS(t, mux)

	c := kubetest.Start(t)
	client, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, other := c.Namespace(t), c.Namespace(t)
	label := "stepseal.dev/admission-" + ns[len(ns)-8:]
	nsObj, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels[label] = "enforce"
	if _, err := client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	fail, none, timeout := admregv1.Fail, admregv1.SideEffectClassNone, int32(10)
	ifNeeded := admregv1.IfNeededReinvocationPolicy
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{label: "enforce"}}
	rule := func(resources ...string) []admregv1.RuleWithOperations {
		return []admregv1.RuleWithOperations{{
			Operations: []admregv1.OperationType{admregv1.Create, admregv1.Update},
			Rule:       admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: resources},
		}}
	}
	cfgName := "stepseal-admission-" + ns[len(ns)-8:]
	mut := &admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: cfgName}, Webhooks: []admregv1.MutatingWebhook{{
		Name: "resolve.stepseal.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(url + "/mutate"), CABundle: caPEM},
		Rules: rule("pods"), FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, NamespaceSelector: sel,
		AdmissionReviewVersions: []string{"v1"}, ReinvocationPolicy: &ifNeeded,
	}}}
	val := &admregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: cfgName}, Webhooks: []admregv1.ValidatingWebhook{{
		Name: "verify.stepseal.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(url + "/validate"), CABundle: caPEM},
		Rules: rule("pods", "pods/ephemeralcontainers"), FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout,
		NamespaceSelector: sel, AdmissionReviewVersions: []string{"v1"},
	}}}
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mut, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfgName, metav1.DeleteOptions{})
	})
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, val, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), cfgName, metav1.DeleteOptions{})
	})

	mk := func(nsName, nm, img string, dry bool) (*corev1.Pod, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: nm, Namespace: nsName}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: img}}}}
		o := metav1.CreateOptions{}
		if dry {
			o.DryRun = []string{metav1.DryRunAll}
		}
		return client.CoreV1().Pods(nsName).Create(ctx, p, o)
	}
	// The apiserver picks the configurations up asynchronously: wait until
	// the unsigned image is refused.
	var denied error
	for i := 0; ; i++ {
		_, denied = mk(ns, "probe", unsigned.String(), true)
		if denied != nil || i == 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantMsg := "container app: image " + unsigned.String() + ` (rule "apps"): no signature found`
	if denied == nil || !strings.Contains(denied.Error(), "stepseal: ") || !strings.Contains(denied.Error(), wantMsg) {
		t.Fatalf("W30 dry run of an unsigned image: %v", denied)
	}
	if _, err := mk(ns, "unsigned", unsigned.String(), false); err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("W1: %v", err)
	}
	p, err := mk(ns, "by-tag", e.host+"/apps/signed:v1", false)
	if err != nil {
		t.Fatalf("W2: %v", err)
	}
	if got := p.Spec.Containers[0].Image; got != signed.String() {
		t.Errorf("W2: stored image %s, want %s", got, signed.String())
	}
	p.Spec.Containers[0].Image = unsigned.String()
	if _, err := client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("W18: %v", err)
	}
	p, err = client.CoreV1().Pods(ns).Get(ctx, "by-tag", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: unsigned.String(), TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent}}}
	if _, err := client.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, "by-tag", p, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "ephemeral container debugger: image "+unsigned.String()) {
		t.Errorf("W17 (kubectl debug): %v", err)
	}
	if _, err := mk(other, "elsewhere", unsigned.String(), false); err != nil {
		t.Errorf("a namespace without the label: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

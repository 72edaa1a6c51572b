package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/internal/testcert"
)

// floorNS is the namespace whose Pods go through the floor webhook only.
const (
	floorNS    = "bench-floor"
	floorLabel = "bench.stepseal.dev/floor"
)

// floor is the anchor of the admission bench: the cheapest validating
// webhook there can be, served over TLS in this process. It decodes the
// AdmissionReview (as every webhook must, to answer its UID) and allows,
// without looking at the Pod. Its Pods show what one webhook call costs the
// apiserver and the machine, whatever the webhook decides; stepseal's warm
// case is one validating call too (its mutating webhook's matchConditions
// skip Pods whose images are all by digest).
type floor struct {
	srv      *http.Server
	reviews  atomic.Int64
	addr     string
	caBundle []byte
}

func startFloor() (*floor, error) {
	cert, ca, err := testcert.New("admissionload floor CA", net.IPv4(127, 0, 0, 1))
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	f := &floor{addr: ln.Addr().String(), caBundle: ca}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *floor) serve(w http.ResponseWriter, r *http.Request) {
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 3<<20)).Decode(&rev); err != nil || rev.Request == nil {
		http.Error(w, "bad AdmissionReview", http.StatusBadRequest)
		return
	}
	f.reviews.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{
		TypeMeta: rev.TypeMeta,
		Response: &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true},
	})
}

// install registers the floor for Pod CREATE in namespaces labelled
// floorLabel (failurePolicy Fail, 10 s, like stepseal's) and creates
// floorNS with the label.
func (f *floor) install(ctx context.Context, kube kubernetes.Interface) error {
	url := "https://" + f.addr + "/validate"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-floor"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "floor.bench.stepseal.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: f.caBundle},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			TimeoutSeconds:          &timeout,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{floorLabel: "true"}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
	if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("floor webhook configuration: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNS, Labels: map[string]string{floorLabel: "true"}}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("floor namespace: %w", err)
	}
	return nil
}

// prime creates Pods in floorNS until the floor has reviewed one (the
// apiserver picks up a new configuration within a second or so).
func (f *floor) prime(ctx context.Context, kube kubernetes.Interface, image string) error {
	for i := 0; ; i++ {
		if _, err := run(ctx, kube, floorNS, fmt.Sprintf("prime-floor-%d", i), 1, 1, func(int) string { return image }); err != nil {
			return fmt.Errorf("priming %s: %w", floorNS, err)
		}
		if f.reviews.Load() > 0 {
			return nil
		}
		if i == 100 {
			return fmt.Errorf("the apiserver never called the floor webhook at %s", f.addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

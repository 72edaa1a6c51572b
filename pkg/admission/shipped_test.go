package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/internal/kubetest"
)

// shippedWebhooks reads the release's webhook configurations
// (controllers/config/admission/600-webhook-configurations.yaml), so that
// tests run the matchConditions, rules and selectors that ship.
func shippedWebhooks(t *testing.T) (*admregv1.MutatingWebhookConfiguration, *admregv1.ValidatingWebhookConfiguration) {
	t.Helper()
	b, err := os.ReadFile("../../controllers/config/admission/600-webhook-configurations.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mut admregv1.MutatingWebhookConfiguration
	var val admregv1.ValidatingWebhookConfiguration
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(raw, &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.Kind {
		case "MutatingWebhookConfiguration":
			err = json.Unmarshal(raw, &mut)
		case "ValidatingWebhookConfiguration":
			err = json.Unmarshal(raw, &val)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(mut.Webhooks) == 0 || len(val.Webhooks) == 0 {
		t.Fatal("shipped webhook configurations not found")
	}
	return &mut, &val
}

// countingMux counts the reviews each path is sent.
type countingMux struct {
	h                http.Handler
	mutate, validate atomic.Int64
}

func (c *countingMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathMutate:
		c.mutate.Add(1)
	case PathValidate:
		c.validate.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

// TestAPIServerShippedWebhooks runs the shipped webhook configurations
// (their matchConditions, evaluated by the real kube-apiserver) against
// the handlers, with the apiserver's audit log on:
//   - a Pod whose every image is pinned by digest is not sent to the
//     mutating webhook (it would return no patch); one naming a tag, in
//     any container list, is, and is stored with the digest;
//   - an encrypted image pinned by digest with IfNotPresent skips the
//     mutating webhook and is still denied by the validating one, whose
//     message says what to set (W34 through the apiserver);
//   - a Pod UPDATE that changes no image is not sent to the validating
//     webhook; one that changes an image is, and is denied;
//   - a container without an image gets the apiserver's own validation
//     error, not a CEL evaluation error;
//   - the audit events of an allowed and a denied Pod carry the
//     validating webhook's annotations verify.stepseal.dev/decision,
//     /rule and /reason; the mutating webhook's call shows as the
//     apiserver's mutation.webhook.admission.k8s.io annotation.
func TestAPIServerShippedWebhooks(t *testing.T) {
	e := newEnv(t)
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")
	enc := e.encrypted("demo/app", e.ppol)
	d := e.decider(nil)
	count := &countingMux{h: Mux(d, nil)}
	url, caPEM := serveTLS(t, count)

	c := kubetest.Start(t)
	client, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := c.Namespace(t)
	label := "stepseal.dev/admission-" + ns[len(ns)-8:]
	optIn(ctx, t, client, ns, label)

	// The shipped configurations, pointed at this test's server and
	// namespace (the release's label is shared by every test here).
	mut, val := shippedWebhooks(t)
	cfgName := "stepseal-shipped-" + ns[len(ns)-8:]
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{label: "enforce"}}
	mut.ObjectMeta = metav1.ObjectMeta{Name: cfgName}
	mut.Webhooks[0].ClientConfig = admregv1.WebhookClientConfig{URL: ptr(url + PathMutate), CABundle: caPEM}
	mut.Webhooks[0].NamespaceSelector = sel
	val.ObjectMeta = metav1.ObjectMeta{Name: cfgName}
	val.Webhooks = val.Webhooks[:1] // verify.stepseal.dev (the label guard has its own test)
	val.Webhooks[0].ClientConfig = admregv1.WebhookClientConfig{URL: ptr(url + PathValidate), CABundle: caPEM}
	val.Webhooks[0].NamespaceSelector = sel
	if len(mut.Webhooks[0].MatchConditions) == 0 || len(val.Webhooks[0].MatchConditions) == 0 {
		t.Fatal("the shipped webhooks have no matchConditions")
	}
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

	mkPod := func(nm string, init []corev1.Container, cs ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: nm, Namespace: ns}, Spec: corev1.PodSpec{InitContainers: init, Containers: cs}}
	}
	ctr := func(img string) corev1.Container { return corev1.Container{Name: "app", Image: img} }
	create := func(p *corev1.Pod) (*corev1.Pod, error) {
		return client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}
	// The apiserver picks the configurations up asynchronously: wait until
	// the unsigned image is refused.
	wantMsg := "container app: image " + unsigned.String() + ` (rule "apps"): no signature found`
	for i := 0; ; i++ {
		_, err := client.CoreV1().Pods(ns).Create(ctx, mkPod("probe", nil, ctr(unsigned.String())), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), wantMsg) {
			break
		}
		if i == 100 {
			t.Fatalf("the webhooks are not called: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// calls runs f and returns how many reviews each webhook got.
	calls := func(f func()) (mutate, validate int64) {
		m0, v0 := count.mutate.Load(), count.validate.Load()
		f()
		return count.mutate.Load() - m0, count.validate.Load() - v0
	}

	t.Run("pinned Pod skips the mutating webhook", func(t *testing.T) {
		var err error
		m, v := calls(func() {
			_, err = create(mkPod("pinned", []corev1.Container{{Name: "init", Image: e.nop.String()}}, ctr(signed.String())))
		})
		if err != nil {
			t.Fatal(err)
		}
		if m != 0 || v != 1 {
			t.Errorf("mutate %d, validate %d calls; want 0 and 1", m, v)
		}
	})
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"tag in containers", mkPod("tag-ctr", nil, ctr(signed.String()), corev1.Container{Name: "tagged", Image: e.host + "/apps/signed:v1"})},
		{"tag in initContainers", mkPod("tag-init", []corev1.Container{{Name: "tagged", Image: e.host + "/apps/signed:v1"}}, ctr(signed.String()))},
	} {
		t.Run(tc.name+" calls the mutating webhook", func(t *testing.T) {
			var p *corev1.Pod
			var err error
			m, v := calls(func() { p, err = create(tc.pod) })
			if err != nil {
				t.Fatal(err)
			}
			if m != 1 || v != 1 {
				t.Errorf("mutate %d, validate %d calls; want 1 and 1", m, v)
			}
			for _, f := range ImageFields(&p.Spec) {
				if f.Image != signed.String() {
					t.Errorf("%s stored as %s, want %s", f.Field, f.Image, signed)
				}
			}
		})
	}
	t.Run("W34 encrypted, pinned, IfNotPresent", func(t *testing.T) {
		p := mkPod("enc", nil, ctr(enc.String()))
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
		var err error
		m, v := calls(func() { _, err = create(p) })
		want := "container app: image " + enc.String() + ` (rule "demo"): encrypted image requires imagePullPolicy: Always (it has "IfNotPresent")`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want a denial containing %q", err, want)
		}
		if m != 0 || v != 1 {
			t.Errorf("mutate %d, validate %d calls; want 0 and 1", m, v)
		}
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
		if _, err := create(p); err != nil {
			t.Errorf("with Always: %v", err)
		}
	})
	t.Run("container without image", func(t *testing.T) {
		_, err := create(mkPod("noimage", nil, corev1.Container{Name: "app"}))
		if err == nil || !strings.Contains(err.Error(), "spec.containers[0].image: Required value") {
			t.Errorf("got %v, want the apiserver's validation error", err)
		}
	})
	t.Run("UPDATE without an image change skips the validating webhook", func(t *testing.T) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, "pinned", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Annotations = map[string]string{"tekton.dev/ready": "READY"}
		m, v := calls(func() { p, err = client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}) })
		if err != nil {
			t.Fatal(err)
		}
		if m != 0 || v != 0 {
			t.Errorf("mutate %d, validate %d calls; want 0 and 0", m, v)
		}
		p.Spec.Containers[0].Image = unsigned.String()
		m, v = calls(func() { _, err = client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}) })
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("image changed to an unsigned one: %v", err)
		}
		if m != 0 || v != 1 {
			t.Errorf("mutate %d, validate %d calls; want 0 and 1", m, v)
		}
	})

	if _, err := create(mkPod("denied", nil, ctr(unsigned.String()))); err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("unsigned: %v", err)
	}
	reason := d.Decide(ctx, pod(unsigned.String()), nil).Images[0].Reason
	if reason == "" {
		t.Fatal("no reject reason for the unsigned image")
	}
	t.Run("audit annotations", func(t *testing.T) {
		event := func(name string) kubetest.AuditEvent {
			t.Helper()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				evs, err := c.AuditEvents(func(ev kubetest.AuditEvent) bool {
					return ev.Stage == "ResponseComplete" && ev.Verb == "create" && ev.ObjectRef != nil &&
						ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Subresource == "" && ev.ObjectRef.Namespace == ns && ev.ObjectRef.Name == name
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) > 0 {
					return evs[len(evs)-1]
				}
				if time.Now().After(deadline) {
					t.Fatalf("no audit event for the create of pod %s", name)
				}
			}
		}
		want := map[string]map[string]string{
			"pinned":  {"verify.stepseal.dev/decision": "allowed"},
			"tag-ctr": {"verify.stepseal.dev/decision": "allowed"},
			"denied":  {"verify.stepseal.dev/decision": "denied", "verify.stepseal.dev/rule": "apps", "verify.stepseal.dev/reason": reason},
		}
		for name, annotations := range want {
			ev := event(name)
			for k, v := range annotations {
				if ev.Annotations[k] != v {
					t.Errorf("pod %s: audit annotation %s = %q, want %q (all: %v)", name, k, ev.Annotations[k], v, ev.Annotations)
				}
			}
			if name != "denied" {
				if _, ok := ev.Annotations["verify.stepseal.dev/rule"]; ok {
					t.Errorf("pod %s: allowed, yet a rule annotation: %v", name, ev.Annotations)
				}
			}
			if code := ev.ResponseStatus.Code; (name == "denied") != (code == http.StatusForbidden) {
				t.Errorf("pod %s: response code %d", name, code)
			}
			// The apiserver records each mutating webhook it called.
			mutated := false
			for k, v := range ev.Annotations {
				mutated = mutated || (strings.HasPrefix(k, "mutation.webhook.admission.k8s.io/") && strings.Contains(v, `"configuration":"`+cfgName+`"`))
			}
			if mutated != (name == "tag-ctr") {
				t.Errorf("pod %s: mutating webhook called %v in the audit log (%v)", name, mutated, ev.Annotations)
			}
		}
	})
}

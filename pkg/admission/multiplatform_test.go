package admission

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/reject"
)

const platformLabel = "node-restriction.kubernetes.io/stepseal-platform"

// nodesOf is a NodePlatforms over fixed nodes (name → platform label;
// "" for a node without the label); "broken" cannot be read.
func nodesOf(nodes map[string]string) *NodePlatforms {
	return &NodePlatforms{Label: platformLabel, Node: func(_ context.Context, name string) (*corev1.Node, error) {
		if name == "broken" {
			return nil, errors.New("connection refused")
		}
		p, ok := nodes[name]
		if !ok {
			return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		if p != "" {
			n.Labels[platformLabel] = p
		}
		return n, nil
	}}
}

// encryptedPod is a Pod of image (pulled Always) bound to node, or pinned
// by nodeSelector to platform.
func encryptedPod(image, node, platform string) *corev1.Pod {
	p := pod(image)
	p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	p.Spec.NodeName = node
	if platform != "" {
		p.Spec.NodeSelector = map[string]string{platformLabel: platform}
	}
	return p
}

// TestDecideMultiPlatform (W29): in a multi-platform cluster, a Pod's
// encrypted image is checked for the platform of the node it is bound to
// (spec.nodeName preset) or pinned to (nodeSelector on the platform
// label), not for the webhook's own --platform: bound to an eu node it is
// admitted, to a us node refused naming the platform and the rule (the
// image is encrypted to eu and us, rule "demo" allows eu), also from the
// same Decider's cache; a Pod pinned to no platform, a node without the
// label and a node that does not exist are refused with ErrPlatform; a
// node that cannot be read is "could not check". A plaintext image does
// not depend on the node.
func TestDecideMultiPlatform(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	enc := e.encrypted("demo/app", e.ppol)
	plain := e.push("apps/plain")
	e.sign(plain, e.publisher)
	d := e.decider(func(c *Config) {
		c.Platform = "us" // ignored for Pods once the nodes tell the platforms apart
		c.Nodes = nodesOf(map[string]string{"eu-1": "eu", "us-1": "us", "bare": ""})
	})
	wantAllowed(t, d.Decide(ctx, encryptedPod(enc.String(), "eu-1", ""), nil))
	wantDenied(t, d.Decide(ctx, encryptedPod(enc.String(), "us-1", ""), nil), ErrPlatform, `platform "us" is not among rule "demo"'s platforms [eu]`, enc.String())
	wantAllowed(t, d.Decide(ctx, encryptedPod(enc.String(), "", "eu"), nil))
	wantDenied(t, d.Decide(ctx, encryptedPod(enc.String(), "", "us"), nil), ErrPlatform, `platform "us"`)
	// Bound to a node: where it runs decides, whatever the selector says.
	wantDenied(t, d.Decide(ctx, encryptedPod(enc.String(), "us-1", "eu"), nil), ErrPlatform, `platform "us"`)
	for _, c := range []struct{ node, says string }{
		{"", "must be pinned to a platform: spec.nodeSelector " + platformLabel},
		{"bare", "bound to node bare, which has no " + platformLabel + " label"},
		{"ghost", "bound to node ghost, which does not exist"},
	} {
		wantDenied(t, d.Decide(ctx, encryptedPod(enc.String(), c.node, ""), nil), ErrPlatform, c.says)
	}
	dec := d.Decide(ctx, encryptedPod(enc.String(), "broken", ""), nil)
	wantDenied(t, dec, ErrNodeUnavailable, "node broken: connection refused")
	if !errors.Is(dec.Err(), reject.ErrUnableToCheck) {
		t.Errorf("an unreadable node: %v", dec.Err())
	}
	for _, node := range []string{"us-1", "", "ghost", "broken"} {
		wantAllowed(t, d.Decide(ctx, encryptedPod(plain.String(), node, ""), nil))
	}
	// The offline check keeps Config.Platform.
	if dec := d.CheckImage(ctx, enc.String(), corev1.PullAlways); dec.Allowed || !errors.Is(dec.Err(), ErrPlatform) {
		t.Errorf("CheckImage for platform us: %+v", dec)
	}
}

// TestAPIServerMultiPlatform (W29 end to end): a real kube-apiserver calls
// the webhook over TLS; the webhook reads the Nodes from the same
// apiserver. A Pod of an encrypted image created with spec.nodeName preset
// to an eu node is admitted, one preset to a node labelled us is refused
// with stepseal's message naming the platform and the rule.
func TestAPIServerMultiPlatform(t *testing.T) {
	e := newEnv(t)
	enc := e.encrypted("demo/app", e.ppol)
	c := kubetest.Start(t)
	client, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := c.Namespace(t)
	suffix := ns[len(ns)-8:]
	nodes := map[string]string{"eu": "node-eu-" + suffix, "us": "node-us-" + suffix}
	for platform, nm := range nodes {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nm, Labels: map[string]string{platformLabel: platform}}}
		if _, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.CoreV1().Nodes().Delete(context.Background(), nm, metav1.DeleteOptions{}) })
	}
	d := e.decider(func(c *Config) {
		c.Nodes = &NodePlatforms{Label: platformLabel, Node: func(ctx context.Context, nm string) (*corev1.Node, error) {
			return client.CoreV1().Nodes().Get(ctx, nm, metav1.GetOptions{})
		}}
	})
	url, caPEM := serveTLS(t, Mux(d, nil))
	label := "stepseal.dev/admission-" + suffix
	optIn(ctx, t, client, ns, label)
	fail, none, timeout := admregv1.Fail, admregv1.SideEffectClassNone, int32(10)
	cfgName := "stepseal-platforms-" + suffix
	val := &admregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: cfgName}, Webhooks: []admregv1.ValidatingWebhook{{
		Name: "verify.stepseal.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(url + PathValidate), CABundle: caPEM},
		Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Create, admregv1.Update},
			Rule: admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: "enforce"}},
	}}}
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, val, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), cfgName, metav1.DeleteOptions{})
	})
	mk := func(nm string, p *corev1.Pod) error {
		p.Name, p.Namespace = nm, ns
		_, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	}
	var probe error
	for i := 0; i < 100 && probe == nil; i++ {
		if probe = mk(fmt.Sprintf("probe-%d", i), pod(e.host+"/nowhere/x@sha256:"+strings.Repeat("0", 64))); probe == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if probe == nil || !strings.Contains(probe.Error(), "stepseal: ") {
		t.Fatalf("the webhook is not called: %v", probe)
	}
	if err := mk("on-eu", encryptedPod(enc.String(), nodes["eu"], "")); err != nil {
		t.Fatalf("bound to the eu node: %v", err)
	}
	err = mk("on-us", encryptedPod(enc.String(), nodes["us"], ""))
	if err == nil || !strings.Contains(err.Error(), "container c0: image "+enc.String()+` (rule "demo"): encrypted image not authorised for this platform: platform "us"`) {
		t.Fatalf("bound to the us node: %v", err)
	}
	t.Logf("denied: %v", err)
}

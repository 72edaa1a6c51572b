package admission

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stepseal/stepseal/internal/kubetest"
)

// TestMain starts the shared cluster with the apiserver's audit log on
// (Pods only), for TestAPIServerShippedWebhooks' audit annotations.
func TestMain(m *testing.M) {
	kubetest.MainWith(m, kubetest.Options{AuditPolicy: []byte(kubetest.PodAuditPolicy)})
}

// serveTLS serves h over HTTPS on 127.0.0.1 with a certificate from a
// fresh CA, and returns the URL and the CA bundle, as envtest points a
// real kube-apiserver at an out-of-cluster webhook.
func serveTLS(t *testing.T, h http.Handler) (string, []byte) {
	return kubetest.ServeTLS(t, h, "stepseal-admission-test-ca")
}

// TestAPIServerCallsWebhook: a real kube-apiserver calls the handlers over
// TLS for Pods in an opted-in namespace: a tag is stored as its digest
// (W2), an unsigned image is refused with stepseal's message (W1), also on
// a dry run (W30), an UPDATE to an unsigned image (W18) and an ephemeral
// container added through pods/ephemeralcontainers (W17) are refused, a
// namespace without the label is untouched, and the label guard keeps a
// tenant who may edit Namespaces from removing the opt-in label (W23).
func TestAPIServerCallsWebhook(t *testing.T) {
	e := newEnv(t)
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")
	d := e.decider(nil)
	var guard LabelGuard // its label is set below, once the namespace is known
	url, caPEM := serveTLS(t, Mux(d, &guard))

	c := kubetest.Start(t)
	client, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, other := c.Namespace(t), c.Namespace(t)
	label := "stepseal.dev/admission-" + ns[len(ns)-8:]
	guard.Label = label
	optIn(ctx, t, client, ns, label)

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
	}, {
		Name: "namespaces.stepseal.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(url + PathNamespaces), CABundle: caPEM},
		Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Update},
			Rule: admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"}}}},
		FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{ns}}}},
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

	// W23: a tenant allowed to edit Namespaces cannot remove the opt-in
	// label; a cluster admin can.
	group := "tenants-" + ns[len(ns)-8:]
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: group}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "update", "patch"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: group}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: group},
		Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: group}}}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.RbacV1().ClusterRoles().Delete(context.Background(), group, metav1.DeleteOptions{}) })
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().ClusterRoleBindings().Delete(context.Background(), group, metav1.DeleteOptions{})
	})
	tcfg := c.Config()
	tcfg.Impersonate = rest.ImpersonationConfig{UserName: "tenant", Groups: []string{group, "system:authenticated"}}
	tenant, err := kubernetes.NewForConfig(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	unlabel := func(cs kubernetes.Interface) error {
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		delete(n.Labels, label)
		_, err = cs.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
		return err
	}
	// The apiserver's RBAC authorizer learns of the new binding from its
	// informer: wait until the tenant may read the namespace, or its
	// attempt below would be refused by RBAC, not by the guard.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := tenant.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("W23 tenant's RBAC: %v", err)
		}
	}
	if err := unlabel(tenant); err == nil || !strings.Contains(err.Error(), "only a cluster admin may change a namespace's admission label: namespace "+ns+": removing "+label+"=enforce by tenant") {
		t.Errorf("W23 tenant: %v", err)
	}
	if err := unlabel(client); err != nil {
		t.Errorf("W23 admin: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// optIn labels namespace ns label=enforce, the opt-in a test's webhook
// configurations select (each test its own label, so the tests' webhooks
// do not see each other's namespaces).
func optIn(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, label string) {
	t.Helper()
	nsObj, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels[label] = "enforce"
	if _, err := client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

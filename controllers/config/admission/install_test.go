package admissionconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certresources "knative.dev/pkg/webhook/certificates/resources"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/admission/incluster"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The names the release YAML gives the webhook.
const (
	systemNS   = "stepseal"
	name       = "stepseal-admission"
	saUser     = "system:serviceaccount:" + systemNS + ":" + name
	optIn      = "stepseal.dev/admission"
	certSecret = "stepseal-admission-certs"
	policyCM   = "stepseal-admission-policy"
)

// The test policy: one rule pinning a digest (no registry needed).
var (
	pinned    = "registry.example/pinned/app@sha256:" + strings.Repeat("a", 64)
	uncovered = "registry.example/other/app@sha256:" + strings.Repeat("b", 64)
	policy    = `apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- name: pinned
  images: ["registry.example/pinned/**"]
  require: digest
  digests: ["sha256:` + strings.Repeat("a", 64) + `"]
`
)

type access struct{ verb, group, resource, subresource, namespace, name string }

func (a access) String() string {
	return fmt.Sprintf("%s %s.%s/%s %q in %q", a.verb, a.resource, a.group, a.subresource, a.name, a.namespace)
}

const other = "<other>"

// What the webhook does: read its policy and certificate Secret (by name),
// renew the Secret, keep its configurations' caBundle, record Events.
var needed = []access{
	{"get", "", "configmaps", "", systemNS, policyCM},
	{"list", "", "configmaps", "", systemNS, policyCM},
	{"watch", "", "configmaps", "", systemNS, policyCM},
	{"get", "", "secrets", "", systemNS, certSecret},
	{"list", "", "secrets", "", systemNS, certSecret},
	{"watch", "", "secrets", "", systemNS, certSecret},
	{"update", "", "secrets", "", systemNS, certSecret},
	{"get", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", name},
	{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", name},
	{"get", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", name},
	{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", name},
	{"create", "events.k8s.io", "events", "", other, ""},
	{"patch", "events.k8s.io", "events", "", other, ""},
}

// What it must not do: read the controller's signing Secret or any other
// Secret or ConfigMap, touch Pods, other webhook configurations or RBAC,
// change its own policy, or mint tokens.
var forbidden = []access{
	{"get", "", "secrets", "", systemNS, "signing-secrets"},
	{"list", "", "secrets", "", systemNS, ""},
	{"watch", "", "secrets", "", systemNS, ""},
	{"get", "", "secrets", "", other, ""},
	{"get", "", "secrets", "", "kube-system", ""},
	{"create", "", "secrets", "", systemNS, ""},
	{"delete", "", "secrets", "", systemNS, certSecret},
	{"get", "", "configmaps", "", systemNS, "stepseal-config"},
	{"list", "", "configmaps", "", systemNS, ""},
	{"update", "", "configmaps", "", systemNS, policyCM},
	{"create", "", "pods", "", other, ""},
	{"get", "", "pods", "", other, ""},
	{"list", "", "pods", "", "", ""},
	{"create", "", "pods", "exec", other, ""},
	{"get", "", "pods", "exec", other, ""},
	{"create", "", "pods", "attach", other, ""},
	{"update", "", "pods", "ephemeralcontainers", other, ""},
	{"update", "", "namespaces", "", "", ""},
	{"list", "", "namespaces", "", "", ""},
	{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "other"},
	{"delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", name},
	{"create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", ""},
	{"list", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", ""},
	{"create", "", "serviceaccounts", "token", systemNS, ""},
	{"create", "rbac.authorization.k8s.io", "rolebindings", "", systemNS, ""},
	{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", ""},
	{"delete", "events.k8s.io", "events", "", other, ""},
	{"create", "tekton.dev", "taskruns", "", other, ""},
}

// forTest adapts the shipped objects to a cluster without kubelet or
// kube-proxy, keeping the route through the Service (so the apiserver
// checks the certificate's name stepseal-admission.stepseal.svc, as in a
// cluster): the Service becomes ExternalName localhost and the webhooks'
// service port the test's listener port; the policy is the test's.
func forTest(t *testing.T, objs []*unstructured.Unstructured, port int) []*unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		switch o.GetKind() {
		case "Service":
			o.Object["spec"] = map[string]any{"type": "ExternalName", "externalName": "localhost"}
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			whs, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			for _, wh := range whs {
				if err := unstructured.SetNestedField(wh.(map[string]any), int64(port), "clientConfig", "service", "port"); err != nil {
					t.Fatal(err)
				}
			}
			if err := unstructured.SetNestedSlice(o.Object, whs, "webhooks"); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			if o.GetName() == policyCM {
				if err := unstructured.SetNestedField(o.Object, policy, "data", admission.PolicyKey); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return objs
}

// replica is one webhook process (admission.Run, what `stepseal admission
// serve --policy-configmap` runs) on the ServiceAccount's token.
type replica struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	logs   *observer.ObservedLogs
}

func startReplica(t *testing.T, cfg *rest.Config, l net.Listener, metricsAddr string) *replica {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	r := &replica{addr: l.Addr().String(), cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() {
		r.done <- incluster.Run(ctx, cfg, admission.RunOptions{
			Namespace: systemNS, PolicyConfigMap: policyCM, CertSecret: certSecret, Service: name, WebhookConfig: name,
			NamespaceLabel: optIn, Listener: l, MetricsAddr: metricsAddr, CertGrace: 3 * time.Second, Ready: ready,
			Logger: zap.New(core).Sugar(),
		})
	}()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("admission.Run: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("admission.Run not ready after a minute")
	}
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// binReplica is the stepseal binary serving as the release's Deployment
// runs it (its args; --addr and --metrics-addr on loopback), on a
// kubeconfig holding the ServiceAccount's token.
type binReplica struct {
	addr, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startBinary(t *testing.T, bin, kubeconfig, addr, metricsAddr string, extra ...string) *binReplica {
	t.Helper()
	log := filepath.Join(t.TempDir(), "webhook.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The shipped Deployment's arguments, with this host's addresses.
	var args []string
	for _, o := range kubetest.Objects(t, "*.yaml") {
		if o.GetKind() != "Deployment" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		raw, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
		for _, a := range raw {
			switch {
			case strings.HasPrefix(a, "--addr="):
				a = "--addr=" + addr
			case strings.HasPrefix(a, "--metrics-addr="):
				a = "--metrics-addr=" + metricsAddr
			}
			args = append(args, a)
		}
	}
	if len(args) < 2 || args[0] != "admission" || args[1] != "serve" {
		t.Fatalf("the Deployment's args %q do not run stepseal admission serve", args)
	}
	cmd := exec.Command(bin, append(append(args, "--kubeconfig="+kubeconfig), extra...)...)
	cmd.Env = append(os.Environ(), "SYSTEM_NAMESPACE="+systemNS)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &binReplica{addr: addr, log: log, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(r.stop)
	return r
}

// stop sends SIGTERM (graceful, as the kubelet does) and waits.
func (r *binReplica) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

func (r *binReplica) forbiddenLogged() []string {
	b, _ := os.ReadFile(r.log)
	return regexp.MustCompile(`(?i).{0,200}(forbidden|unauthorized).{0,200}`).FindAllString(string(b), -1)
}

// buildStepseal builds images/stepseal-tekton (the binary ko puts in the
// webhook's image: serving in a cluster links client-go's clientset, which
// the lean stepseal binary hands over to it).
func buildStepseal(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stepseal-tekton")
	out, err := exec.Command("go", "build", "-o", bin, stepsealImport).CombinedOutput()
	if err != nil {
		t.Fatalf("building stepseal: %v\n%s", err, out)
	}
	return bin
}

// saKubeconfig writes cfg (a token) as a kubeconfig file.
func saKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "sa"}
	kc.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// forbiddenLogged: anything the apiserver refused the webhook.
func (r *replica) forbiddenLogged() []string {
	var out []string
	re := regexp.MustCompile(`(?i)forbidden|unauthorized`)
	for _, e := range r.logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if re.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l, l.Addr().(*net.TCPAddr).Port
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, _ := listen(t)
	addr := l.Addr().String()
	l.Close()
	return addr
}

// saConfig is a client config holding only a TokenRequest token of the
// release's ServiceAccount.
func saConfig(t *testing.T, c *kubetest.Cluster, kube kubernetes.Interface) *rest.Config {
	t.Helper()
	exp := int64(3600)
	tr, err := kube.CoreV1().ServiceAccounts(systemNS).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", systemNS, name, err)
	}
	admin := c.Config()
	return &rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}, BearerToken: tr.Status.Token}
}

func allowed(ctx context.Context, t *testing.T, kube kubernetes.Interface, a access, otherNS string) bool {
	t.Helper()
	ns := a.namespace
	if ns == other {
		ns = otherNS
	}
	r, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   saUser,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Name: a.name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

func ensureNamespace(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns string, labels map[string]string) {
	t.Helper()
	n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		n, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(labels) == 0 {
		return
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for k, v := range labels {
		n.Labels[k] = v
	}
	if _, err := kube.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func pod(ns, nm, img string, owners ...metav1.OwnerReference) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: nm, GenerateName: "", Namespace: ns, OwnerReferences: owners},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: img}}}}
}

// scrape returns the webhook's /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue is the sum of the samples of series whose line starts with
// prefix (a metric name and, optionally, the start of its labels).
func metricValue(body, prefix string) float64 {
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// servedCert is the leaf certificate a replica presents.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the presented certificate only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func pemCount(b []byte) int { return bytes.Count(b, []byte("-----BEGIN CERTIFICATE-----")) }

// TestInstallWebhook applies the webhook's release YAML to a real
// kube-apiserver (RBAC) and runs two webhook replicas on nothing but the
// ServiceAccount's token: the stepseal binary with the Deployment's
// arguments (the one the apiserver calls), and admission.Run in process. It checks the RBAC by SubjectAccessReviews; that
// knative's certificates controller fills the shipped empty Secret and its
// CA reaches both configurations; that the apiserver, routed through the
// Service (ExternalName localhost here: no kube-proxy) and so checking the
// certificate's service name, refuses an uncovered image in an opted-in
// namespace with stepseal's message and never calls the webhook for
// stepseal, kube-system, tekton-pipelines (opted in by label, exempt by
// name) or a namespace without the label; that a tenant can neither remove
// the label nor exempt the namespace by labelling it with an exempt name
// (W23); that a refusal is an Event on the Pod's owner, or on the Namespace
// for an ownerless Pod, and a dry run records none (W30); that the
// metrics endpoint counts the decisions; that the policy is reloaded and a
// broken one changes nothing; that a certificate rotation
// (Secret emptied, then a certificate about to expire) fails no admission
// during a loop of Pod creates (W35); and that with no replica running the
// opted-in namespace fails closed while the exempt ones work (W22).
func TestInstallWebhook(t *testing.T) {
	t.Setenv("SYSTEM_NAMESPACE", systemNS)
	c := kubetest.Start(t)
	kube, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ensureNamespace(ctx, t, kube, systemNS, nil)
	// Leave the shared cluster as found: no webhook configurations (they
	// fail closed once the replicas stop), no opt-in label on the system
	// namespaces.
	t.Cleanup(func() { uninstall(t, kube) })
	bin := buildStepseal(t)
	addr1 := freeAddr(t)
	port, _ := strconv.Atoi(addr1[strings.LastIndexByte(addr1, ':')+1:])
	kubetest.Apply(ctx, t, c.Config(), "stepseal-admission-test", forTest(t, kubetest.Objects(t, "*.yaml"), port))

	tenantNS, plainNS := c.Namespace(t), c.Namespace(t)
	for _, a := range needed {
		if !allowed(ctx, t, kube, a, tenantNS) {
			t.Errorf("%s is denied %s; the webhook needs it", saUser, a)
		}
	}
	for _, a := range forbidden {
		if allowed(ctx, t, kube, a, tenantNS) {
			t.Errorf("%s is allowed %s", saUser, a)
		}
	}

	sa := saConfig(t, c, kube)
	metricsAddr := freeAddr(t)
	// The replica the apiserver calls is the stepseal binary, run as the
	// Deployment runs it; a second one runs in this process. Both run the
	// certificates controller and the CA injector.
	r1 := startBinary(t, bin, saKubeconfig(t, sa), addr1, metricsAddr)
	l2, _ := listen(t)
	r2 := startReplica(t, sa, l2, "")

	// The certificates controller fills the Secret; the CA reaches both
	// configurations; the replica serves the Secret's certificate.
	var sec *corev1.Secret
	waitFor(t, 30*time.Second, "the certificate Secret filled and its CA in both webhook configurations", func() bool {
		sec, err = kube.CoreV1().Secrets(systemNS).Get(ctx, certSecret, metav1.GetOptions{})
		if err != nil || len(sec.Data[certresources.CACert]) == 0 {
			return false
		}
		return bundlesHave(ctx, t, kube, sec.Data[certresources.CACert])
	})
	leaf := servedCert(t, r1.addr)
	if !strings.HasPrefix(string(sec.Data[certresources.ServerCert]), "-----BEGIN CERTIFICATE-----") || !contains(leaf.DNSNames, name+"."+systemNS+".svc") {
		t.Fatalf("served certificate names %v, want %s.%s.svc", leaf.DNSNames, name, systemNS)
	}
	// Re-applying the release (server-side, as an upgrade does) keeps the
	// certificate and the caBundles: the YAML holds neither.
	kubetest.Apply(ctx, t, c.Config(), "stepseal-admission-test", forTest(t, kubetest.Objects(t, "*.yaml"), port))
	again, err := kube.CoreV1().Secrets(systemNS).Get(ctx, certSecret, metav1.GetOptions{})
	if err != nil || !bytes.Equal(again.Data[certresources.ServerCert], sec.Data[certresources.ServerCert]) {
		t.Fatalf("re-applying the release changed the certificate Secret: %v", err)
	}
	if !bundlesHave(ctx, t, kube, sec.Data[certresources.CACert]) {
		t.Fatal("re-applying the release dropped a caBundle")
	}

	ensureNamespace(ctx, t, kube, tenantNS, map[string]string{optIn: "enforce"})
	for _, ns := range []string{systemNS, "kube-system", "tekton-pipelines"} {
		ensureNamespace(ctx, t, kube, ns, map[string]string{optIn: "enforce"})
	}
	create := func(p *corev1.Pod, dry bool) error {
		o := metav1.CreateOptions{}
		if dry {
			o.DryRun = []string{metav1.DryRunAll}
		}
		_, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, o)
		return err
	}
	// The apiserver sees new configurations asynchronously.
	var denied error
	waitFor(t, 30*time.Second, "the apiserver calling the webhook", func() bool {
		denied = create(pod(tenantNS, "probe", uncovered), true)
		return denied != nil && strings.Contains(denied.Error(), "stepseal: ")
	})
	wantMsg := "container app: image " + uncovered + ": matches no admission rule: repository registry.example/other/app matches no rule"
	if err := create(pod(tenantNS, "ownerless", uncovered), false); err == nil || !strings.Contains(err.Error(), "stepseal: ") || !strings.Contains(err.Error(), "registry.example/other/app matches no rule") {
		t.Fatalf("uncovered image in an opted-in namespace: %v (want %q)", err, wantMsg)
	}
	if err := create(pod(tenantNS, "pinned", pinned), false); err != nil {
		t.Fatalf("pinned image: %v", err)
	}
	rsUID := types.UID("0b5e0c4e-1111-4222-8333-944455556666")
	isController := true
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: rsUID, Controller: &isController}
	if err := create(pod(tenantNS, "owned", uncovered, owner), false); err == nil {
		t.Fatal("owned Pod with an uncovered image admitted")
	}
	if err := create(pod(tenantNS, "dry-run-only", uncovered), true); err == nil {
		t.Fatal("dry run of an uncovered image admitted")
	}

	// Exempt by name, and not opted in: admitted, the webhook not called.
	before := metricValue(scrape(t, metricsAddr), `stepseal_admission_latency_seconds_count{webhook="validate"`)
	for _, ns := range []string{systemNS, "kube-system", "tekton-pipelines", plainNS} {
		if err := create(pod(ns, "exempt-"+strconv.FormatInt(time.Now().UnixNano(), 36), uncovered), false); err != nil {
			t.Errorf("namespace %s: %v", ns, err)
		}
	}
	body := scrape(t, metricsAddr)
	if after := metricValue(body, `stepseal_admission_latency_seconds_count{webhook="validate"`); after != before {
		t.Errorf("the validating webhook was called %v times for exempt or not opted-in namespaces", after-before)
	}
	// The metrics count the refusals (probe dry runs included) and the admission.
	if v := metricValue(body, `stepseal_admission_decisions_total{decision="denied"`); v < 4 {
		t.Errorf("stepseal_admission_decisions_total{decision=\"denied\"} = %v, want ≥ 4\n%s", v, body)
	}
	if v := metricValue(body, `stepseal_admission_decisions_total{decision="allowed"`); v < 1 {
		t.Errorf("stepseal_admission_decisions_total{decision=\"allowed\"} = %v, want ≥ 1", v)
	}

	// Events: on the ReplicaSet for the owned Pod, on the Namespace for the
	// ownerless one, none for the dry run.
	waitFor(t, 20*time.Second, "Events on the owner and the Namespace", func() bool {
		evs, err := kube.EventsV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		onOwner, onNS := false, false
		for _, e := range evs.Items {
			if strings.Contains(e.Note, "dry-run-only") {
				t.Fatalf("a dry run recorded Event %s/%s: %s", e.Namespace, e.Name, e.Note)
			}
			if e.Reason != admission.ReasonDenied || e.ReportingController != "stepseal-admission" {
				continue
			}
			if e.Regarding.Kind == "ReplicaSet" && e.Regarding.UID == rsUID && e.Namespace == tenantNS && strings.Contains(e.Note, "pod owned") && strings.Contains(e.Note, uncovered) {
				onOwner = true
			}
			if e.Regarding.Kind == "Namespace" && e.Regarding.Name == tenantNS && e.Namespace == tenantNS && strings.Contains(e.Note, "pod ownerless") {
				onNS = true
			}
		}
		return onOwner && onNS
	})

	// The policy is hot-reloaded; a broken one changes nothing.
	setPolicy := func(p string) {
		t.Helper()
		cm, err := kube.CoreV1().ConfigMaps(systemNS).Get(ctx, policyCM, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data[admission.PolicyKey] = p
		if _, err := kube.CoreV1().ConfigMaps(systemNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPolicy(policy + "  unknown: field\n")
	waitFor(t, 20*time.Second, "the broken policy refused in the webhook's log", func() bool {
		b, _ := os.ReadFile(r1.log)
		return bytes.Contains(b, []byte("admission policy refused; keeping the last good policy")) && bytes.Contains(b, []byte(`unknown field`))
	})
	if err := create(pod(tenantNS, "after-broken-policy", pinned), true); err != nil {
		t.Errorf("a broken policy changed the decision on the pinned image: %v", err)
	}
	if err := create(pod(tenantNS, "after-broken-policy", uncovered), true); err == nil {
		t.Error("a broken policy admitted the uncovered image")
	}
	widened := policy + "- name: other\n  images: [\"registry.example/other/**\"]\n  require: digest\n  digests: [\"sha256:" + strings.Repeat("b", 64) + "\"]\n"
	setPolicy(widened)
	waitFor(t, 20*time.Second, "the new policy in force", func() bool {
		return create(pod(tenantNS, "after-new-policy", uncovered), true) == nil
	})
	setPolicy(policy)
	waitFor(t, 20*time.Second, "the test's policy back in force", func() bool {
		return create(pod(tenantNS, "after-restore", uncovered), true) != nil
	})

	// W23 as shipped: a tenant who may edit Namespaces cannot remove the
	// opt-in label, and naming their namespace kube-system by label changes
	// nothing (the apiserver keeps kubernetes.io/metadata.name the name).
	tenant := tenantClient(ctx, t, c, kube, tenantNS)
	n, err := tenant.CoreV1().Namespaces().Get(ctx, tenantNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(n.Labels, optIn)
	if _, err := tenant.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "only a cluster admin may change a namespace's admission label") {
		t.Errorf("W23 tenant removing the label: %v", err)
	}
	n, _ = tenant.CoreV1().Namespaces().Get(ctx, tenantNS, metav1.GetOptions{})
	n.Labels["kubernetes.io/metadata.name"] = "kube-system"
	if _, err := tenant.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Logf("tenant labelling the namespace kube-system: %v", err)
	}
	if err := create(pod(tenantNS, "after-relabel", uncovered), true); err == nil {
		t.Error("a tenant exempted their namespace with a kubernetes.io/metadata.name label")
	}

	// W35: rotations while Pods are created without pause. The Secret is
	// emptied (the controller makes a new CA and certificate), then given a
	// certificate that expires within the day (renewed likewise).
	for _, how := range []string{"emptied", "expiring"} {
		old := servedCert(t, r1.addr)
		var okN, failN atomic.Int64
		var failMu sync.Mutex
		var fails []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					p := pod(tenantNS, fmt.Sprintf("rot-%s-%d-%d", how, w, i), pinned)
					if err := create(p, false); err != nil {
						failN.Add(1)
						failMu.Lock()
						fails = append(fails, err.Error())
						failMu.Unlock()
					} else {
						okN.Add(1)
					}
				}
			}()
		}
		time.Sleep(time.Second)
		s, err := kube.CoreV1().Secrets(systemNS).Get(ctx, certSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if how == "emptied" {
			s.Data = nil
		} else {
			s.Data = expiringSecretData(t, ctx)
		}
		if _, err := kube.CoreV1().Secrets(systemNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		rotated := time.Now()
		waitFor(t, 60*time.Second, "the replica serving the rotated certificate ("+how+")", func() bool {
			cur := servedCert(t, r1.addr)
			return !bytes.Equal(cur.Raw, old.Raw) && time.Until(cur.NotAfter) > 48*time.Hour
		})
		switched := time.Since(rotated)
		time.Sleep(2 * time.Second) // Pods keep coming after the switch
		close(stop)
		wg.Wait()
		sec, _ = kube.CoreV1().Secrets(systemNS).Get(ctx, certSecret, metav1.GetOptions{})
		if !bundlesHave(ctx, t, kube, sec.Data[certresources.CACert]) {
			t.Errorf("%s: the new CA is not in both caBundles", how)
		}
		t.Logf("rotation (%s): new certificate served %v after the Secret changed; %d Pods admitted, %d failed during it",
			how, switched.Round(time.Millisecond), okN.Load(), failN.Load())
		if failN.Load() > 0 || okN.Load() == 0 {
			t.Errorf("rotation (%s): %d of %d Pod creates failed: %v", how, failN.Load(), failN.Load()+okN.Load(), fails[:min(len(fails), 3)])
		}
	}
	mw, _ := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if n := pemCount(mw.Webhooks[0].ClientConfig.CABundle); n < 2 || n > incluster.MaxCAs {
		t.Errorf("caBundle after rotations holds %d CAs, want the new one and still valid old ones (≤ %d)", n, incluster.MaxCAs)
	}

	for _, r := range []interface{ forbiddenLogged() []string }{r1, r2} {
		if f := r.forbiddenLogged(); len(f) > 0 {
			t.Errorf("the webhook was refused something; its RBAC lacks a permission: %v", f)
		}
	}

	// W22: no replica running. Opted-in namespaces fail closed; the exempt
	// and not opted-in ones still create Pods.
	r1.stop()
	r2.stop()
	if err := create(pod(tenantNS, "webhook-down", pinned), false); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("W22 opted-in namespace with the webhook down: %v", err)
	}
	for _, ns := range []string{systemNS, "kube-system", "tekton-pipelines", plainNS} {
		if err := create(pod(ns, "down-"+strconv.FormatInt(time.Now().UnixNano(), 36), uncovered), false); err != nil {
			t.Errorf("W22 namespace %s with the webhook down: %v", ns, err)
		}
	}
	// The exempt namespaces stay repairable: the label guard skips them.
	ensureNamespace(ctx, t, kube, "tekton-pipelines", map[string]string{"repaired": "yes"})
}

// uninstall deletes the webhook configurations and removes the opt-in
// label from the namespaces the test labelled that outlive it.
func uninstall(t *testing.T, kube kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	_ = kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	_ = kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	for _, ns := range []string{systemNS, "kube-system", "tekton-pipelines"} {
		n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil || n.Labels[optIn] == "" {
			continue
		}
		delete(n.Labels, optIn)
		if _, err := kube.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Errorf("removing %s from namespace %s: %v", optIn, ns, err)
		}
	}
}

// bundlesHave: ca is the first certificate of the caBundle of every webhook
// of both configurations.
func bundlesHave(ctx context.Context, t *testing.T, kube kubernetes.Interface, ca []byte) bool {
	t.Helper()
	mw, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	vw, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	want := bytes.TrimSpace(ca)
	var bundles [][]byte
	for _, w := range mw.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, w := range vw.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, b := range bundles {
		if !bytes.HasPrefix(b, want) {
			return false
		}
	}
	return len(bundles) == 4
}

// expiringSecretData is a CA and serving certificate for the Service that
// expire in 12 hours: the certificates controller renews it (a day before).
func expiringSecretData(t *testing.T, ctx context.Context) map[string][]byte {
	t.Helper()
	key, cert, ca, err := certresources.CreateCerts(ctx, name, systemNS, time.Now().Add(12*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{certresources.ServerKey: key, certresources.ServerCert: cert, certresources.CACert: ca}
}

// tenantClient impersonates a user allowed by RBAC to update Namespaces.
func tenantClient(ctx context.Context, t *testing.T, c *kubetest.Cluster, kube kubernetes.Interface, ns string) kubernetes.Interface {
	t.Helper()
	group := "tenants-" + ns[len(ns)-8:]
	rb := rbacClusterRole(group)
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rb.ClusterRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rb.ClusterRoleBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := c.Config()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "tenant", Groups: []string{group, "system:authenticated"}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The apiserver's RBAC authorizer learns of the binding from its
	// informer: until then RBAC, not the guard, refuses the tenant.
	waitFor(t, 30*time.Second, "the tenant's ClusterRoleBinding to take effect", func() bool {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err == nil
	})
	return cs
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type roleAndBinding struct {
	ClusterRole        rbacv1.ClusterRole
	ClusterRoleBinding rbacv1.ClusterRoleBinding
}

// rbacClusterRole lets group get, update and patch Namespaces.
func rbacClusterRole(group string) roleAndBinding {
	return roleAndBinding{
		rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: group}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "update", "patch"}}}},
		rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: group}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: group},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: group}}},
	}
}

package realnode

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ita "github.com/in-toto/attestation/go/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/realnode"
	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/vsa"
)

const verifierID = "https://stepseal.dev/verifier/realnode"

// env is one test's world on the real node: a namespace opted in to
// stepseal's admission webhook (served by this process, called by the
// node's kube-apiserver over TLS), images pushed under a prefix of the
// node's scratch registry, a publisher key, a verifier key, and the
// platform "node" whose private key can be put into the node's key
// directory.
type env struct {
	t         *testing.T
	n         *realnode.Node
	ns        string
	scratch   string // HOST:PORT
	prefix    string // repository prefix of this test's images
	c         *oci.Client
	publisher crypto.Signer
	verifier  crypto.Signer
	nodeKey   *ecdsa.PrivateKey // platform "node": this cluster
	otherKey  *ecdsa.PrivateKey // platform "other"
	ppol      *policy.Policy
	pol       *admission.Policy
	base      v1.Image // the node's busybox
}

func newEnv(ctx context.Context, t *testing.T) *env {
	t.Helper()
	n := realnode.Get(t)
	e := &env{t: t, n: n, ns: n.Namespace(t), scratch: n.ScratchRegistry(t)}
	e.prefix = e.ns
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	e.publisher, e.verifier = genKey(t), genKey(t)
	if e.nodeKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if e.otherKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	e.ppol = e.platformPolicy()
	e.pol = e.policy()
	ref, err := name.ParseReference(n.Image(t, "BUSYBOX"))
	if err != nil {
		t.Fatal(err)
	}
	if e.base, err = remote.Image(ref, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	return e
}

func genKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pemOf is pub as PEM, JSON-quoted for a YAML flow value.
func pemOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := signing.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(string(b))
	return string(js)
}

// nodeKeyPEM is platform "node"'s private key as the node's key directory
// holds it.
func (e *env) nodeKeyPEM() []byte {
	e.t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(e.nodeKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// platformPolicy: <scratch>/<prefix>/secret/** encrypted to "node",
// …/elsewhere/** encrypted to "other" only, everything else public.
func (e *env) platformPolicy() *policy.Policy {
	e.t.Helper()
	doc := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: realnode, version: 1}
spec:
  platforms:
  - {name: node, publicKey: %s}
  - {name: other, publicKey: %s}
  artifacts:
  - {match: "*/%s/secret/**", platforms: [node], encrypt: true}
  - {match: "*/%s/elsewhere/**", platforms: [other], encrypt: true}
  - {match: "**", platforms: [], encrypt: false}
`, pemOf(e.t, e.nodeKey.Public()), pemOf(e.t, e.otherKey.Public()), e.prefix, e.prefix)
	p, err := policy.Parse([]byte(doc), "platform-policy", policy.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// policy is the admission policy: Tekton's injected images and its shell
// image (busybox) pinned by the digests node-up.sh gives Tekton's
// controller; the test's apps and secret images signed by the publisher
// (secret ones encrypted, for platform node); builds with a VSA.
func (e *env) policy() *admission.Policy {
	e.t.Helper()
	digests := func(names ...string) string {
		var ds []string
		for _, n := range names {
			_, d, _ := strings.Cut(e.n.Image(e.t, n), "@")
			ds = append(ds, fmt.Sprintf("%q", d))
		}
		return "[" + strings.Join(ds, ", ") + "]"
	}
	reg, _, _ := strings.Cut(e.n.Image(e.t, "BUSYBOX"), "/")
	pub := pemOf(e.t, e.publisher.Public())
	doc := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- name: tekton-infra
  images: ["%[1]s/tekton/**"]
  require: digest
  digests: %[2]s
- name: tekton-shell
  images: ["%[1]s/busybox"]
  require: digest
  digests: %[3]s
- name: apps
  images: ["%[4]s/%[5]s/apps/**"]
  require: signed
  keys: [%[6]s]
- name: secret
  images: ["%[4]s/%[5]s/secret/**", "%[4]s/%[5]s/elsewhere/**"]
  require: signed
  keys: [%[6]s]
  platforms: [node]
- name: builds
  images: ["%[4]s/%[5]s/builds/**"]
  require: vsa
  vsa: {verifier: %[7]q, maxAge: 1h, key: %[8]s}
`, reg, digests("ENTRYPOINT", "NOP", "WORKINGDIRINIT", "SIDECARLOGRESULTS"), digests("BUSYBOX"),
		e.scratch, e.prefix, pub, verifierID, pemOf(e.t, e.verifier.Public()))
	p, err := admission.ParsePolicy([]byte(doc))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// webhook serves stepseal's handlers (a Decider for platform "node") over
// TLS on 127.0.0.1 and registers mutating and validating webhook
// configurations for the test's namespace (opted in by a label) with a url
// clientConfig, as a cluster without a Service in front of the webhook
// would. It waits until the apiserver calls them.
func (e *env) webhook(ctx context.Context) {
	e.t.Helper()
	d, err := admission.NewDecider(admission.Config{Policy: e.pol, Platform: "node", PlatformPolicy: e.ppol,
		Registry: e.c, VSA: admission.RegistryVSA{Registry: e.c}})
	if err != nil {
		e.t.Fatal(err)
	}
	url, caPEM := serveTLS(e.t, admission.Mux(d, nil))
	k := e.n.Kube
	suffix := e.ns[len(e.ns)-5:]
	label := "stepseal.dev/admission-realnode-" + suffix
	nsObj, err := k.CoreV1().Namespaces().Get(ctx, e.ns, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	nsObj.Labels[label] = "enforce"
	if _, err := k.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
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
	cfgName := "stepseal-realnode-" + e.ns
	mut := &admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: cfgName}, Webhooks: []admregv1.MutatingWebhook{{
		Name: "resolve.stepseal.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(url + admission.PathMutate), CABundle: caPEM},
		Rules: rule("pods"), FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, NamespaceSelector: sel,
		AdmissionReviewVersions: []string{"v1"}, ReinvocationPolicy: &ifNeeded,
	}}}
	val := &admregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: cfgName}, Webhooks: []admregv1.ValidatingWebhook{{
		Name: "verify.stepseal.dev", ClientConfig: admregv1.WebhookClientConfig{URL: ptr(url + admission.PathValidate), CABundle: caPEM},
		Rules: rule("pods", "pods/ephemeralcontainers"), FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout,
		NamespaceSelector: sel, AdmissionReviewVersions: []string{"v1"},
	}}}
	if _, err := k.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mut, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = k.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfgName, metav1.DeleteOptions{})
	})
	if _, err := k.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, val, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = k.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), cfgName, metav1.DeleteOptions{})
	})
	// The apiserver picks configurations up asynchronously: wait until a
	// dry run of an image no rule covers is refused.
	probe := e.scratch + "/uncovered@sha256:" + strings.Repeat("0", 64)
	for i := 0; ; i++ {
		_, err := e.createPod(ctx, "probe", probe, corev1.PullIfNotPresent, true)
		if err != nil && strings.Contains(err.Error(), "stepseal: ") {
			return
		}
		if i == 100 {
			e.t.Fatalf("the apiserver does not call the webhook: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

// serveTLS serves h over HTTPS on 127.0.0.1 with a certificate of a fresh
// CA, and returns the URL and the CA's PEM.
func serveTLS(t *testing.T, h http.Handler) (string, []byte) {
	return kubetest.ServeTLS(t, h, "stepseal-realnode-test-ca")
}

// image is the node's busybox plus one layer holding /secret.txt with
// content, so that every image has a layer of its own (no snapshot on the
// node can stand in for it).
func (e *env) image(content string) v1.Image {
	e.t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "secret.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		e.t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		e.t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := mutate.AppendLayers(e.base, layer)
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// ref is <scratch>/<prefix>/<repo>:<tag>.
func (e *env) ref(repo, tag string) name.Reference {
	e.t.Helper()
	r, err := e.c.ParseReference(e.scratch + "/" + e.prefix + "/" + repo + ":" + tag)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// publish publishes img with stepseal's publish workflow (pkg/publish:
// encrypted to exactly the platforms the platform policy names for the
// repository, pushed by digest, signed by the publisher, then tagged).
func (e *env) publish(ctx context.Context, img v1.Image, repo, tag string) *publish.Result {
	e.t.Helper()
	r, err := publish.Publish(ctx, e.c, img, e.ref(repo, tag), publish.Options{Policy: e.ppol, Key: e.publisher})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// push writes img to repo:tag without any signature.
func (e *env) push(ctx context.Context, img v1.Image, repo, tag string) name.Digest {
	e.t.Helper()
	ref := e.ref(repo, tag)
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		e.t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		e.t.Fatal(err)
	}
	return ref.Context().Digest(h.String())
}

// attestVSA attaches to d a PASSED VSA by the verifier, signed with pkg/vsa
// (what the controller signs).
func (e *env) attestVSA(ctx context.Context, d name.Digest) {
	e.t.Helper()
	sub, err := vsa.ImageSubject(d.String())
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := signing.NewSigner(e.verifier)
	if err != nil {
		e.t.Fatal(err)
	}
	env, _, err := vsa.Sign(ctx, vsa.Summary{
		VerifierID: verifierID, Time: time.Now(), Result: "PASSED",
		ResourceURI:  vsa.ResourceURI(d.Context().RegistryStr(), d.Context().RepositoryStr()),
		Subjects:     []*ita.ResourceDescriptor{sub},
		PolicyURI:    "tuf:layouts/builds.layout?role=targets&version=1",
		PolicyDigest: map[string]string{"sha256": strings.Repeat("ab", 32)},
	}, s)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.Attest(ctx, d, env, vsa.PredicateType); err != nil {
		e.t.Fatal(err)
	}
}

// createPod creates a one-container Pod that prints /secret.txt (or, for
// an image without one, fails to) and exits.
func (e *env) createPod(ctx context.Context, podName, image string, pull corev1.PullPolicy, dry bool) (*corev1.Pod, error) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: e.ns}, Spec: corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: ptr(int64(1)),
		Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: pull,
			Command: []string{"sh", "-c", "cat /secret.txt 2>/dev/null || echo no-secret"}}},
	}}
	o := metav1.CreateOptions{}
	if dry {
		o.DryRun = []string{metav1.DryRunAll}
	}
	return e.n.Kube.CoreV1().Pods(e.ns).Create(ctx, p, o)
}

// mustRun creates the Pod, which must be admitted, waits until it
// Succeeded, and checks that it printed out and that the kubelet reports
// one of want as what it ran (status imageID). That is one digest, except
// for images with the same config (the same content encrypted twice):
// containerd's CRI keys images by config digest and reports the
// lexicographically first repository digest of all the images on the node
// that share it.
func (e *env) mustRun(ctx context.Context, podName, image string, pull corev1.PullPolicy, out string, want ...name.Digest) *corev1.Pod {
	e.t.Helper()
	if _, err := e.createPod(ctx, podName, image, pull, false); err != nil {
		e.t.Fatalf("Pod %s (%s) refused: %v", podName, image, err)
	}
	p := e.n.WaitPod(ctx, e.t, e.ns, podName, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || pullFailed(p) != ""
	})
	if p.Status.Phase != corev1.PodSucceeded {
		e.t.Fatalf("Pod %s (%s): phase %s, %s; statuses %+v", podName, image, p.Status.Phase, pullFailed(p), p.Status.ContainerStatuses)
	}
	got := p.Status.ContainerStatuses[0].ImageID
	if !slices.ContainsFunc(want, func(d name.Digest) bool { return d.String() == got }) {
		e.t.Errorf("Pod %s: the kubelet ran imageID %s, want %v", podName, got, want)
	}
	if out != "" {
		logs, err := e.n.Logs(ctx, e.ns, podName, "app")
		if err != nil {
			e.t.Fatal(err)
		}
		if strings.TrimSpace(string(logs)) != out {
			e.t.Errorf("Pod %s printed %q, want %q", podName, logs, out)
		}
	}
	return p
}

// mustFailPull creates the Pod, which must be admitted, and waits until
// the kubelet reports that it could not pull the image; it returns the
// kubelet's message.
func (e *env) mustFailPull(ctx context.Context, podName, image string) string {
	e.t.Helper()
	if _, err := e.createPod(ctx, podName, image, corev1.PullAlways, false); err != nil {
		e.t.Fatalf("Pod %s (%s) refused: %v", podName, image, err)
	}
	p := e.n.WaitPod(ctx, e.t, e.ns, podName, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || pullFailed(p) != ""
	})
	msg := pullFailed(p)
	if msg == "" {
		e.t.Fatalf("Pod %s (%s) pulled its image: phase %s", podName, image, p.Status.Phase)
	}
	return msg
}

// pullFailed is "REASON: message" when the Pod's container waits because
// its image could not be pulled.
func pullFailed(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
			return w.Reason + ": " + w.Message
		}
	}
	return ""
}

// mustDeny creates the Pod, which the webhook must refuse with a message
// containing every want; no such Pod may exist afterwards.
func (e *env) mustDeny(ctx context.Context, podName, image string, pull corev1.PullPolicy, want ...string) {
	e.t.Helper()
	_, err := e.createPod(ctx, podName, image, pull, false)
	if err == nil {
		e.t.Fatalf("Pod %s (%s) admitted", podName, image)
	}
	for _, w := range append([]string{"stepseal: "}, want...) {
		if !strings.Contains(err.Error(), w) {
			e.t.Errorf("Pod %s: refusal %q lacks %q", podName, err, w)
		}
	}
	if _, err := e.n.Kube.CoreV1().Pods(e.ns).Get(ctx, podName, metav1.GetOptions{}); err == nil {
		e.t.Errorf("Pod %s exists after its refusal", podName)
	}
}

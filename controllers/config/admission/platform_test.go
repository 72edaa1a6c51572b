package admissionconfig

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	certresources "knative.dev/pkg/webhook/certificates/resources"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/oci"
	platformpolicy "github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
)

const platformLabel = "node-restriction.kubernetes.io/stepseal-platform"

// TestInstallWebhookPlatformLabel (W29 in a cluster): the release's
// webhook, with optional/nodes-rbac.yaml applied, run as the Deployment
// runs it plus --platform-label (and a platform policy file), on nothing
// but its ServiceAccount's token. The apiserver calls it through the
// Service for Pods of an image encrypted to platforms eu and us under a
// rule that allows eu: a Pod bound (spec.nodeName) or pinned
// (nodeSelector) to an eu node is created, to a us node refused naming the
// platform and the rule, and a Pod pinned to no platform refused. Without
// the optional RBAC the ServiceAccount may not list Nodes; with it the
// webhook is forbidden nothing.
func TestInstallWebhookPlatformLabel(t *testing.T) {
	t.Setenv("SYSTEM_NAMESPACE", systemNS)
	c := kubetest.Start(t)
	kube, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ensureNamespace(ctx, t, kube, systemNS, nil)
	t.Cleanup(func() { uninstall(t, kube) })

	// An image encrypted to eu and us, signed.
	host := testregistry.Start(t)
	reg, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	publisher, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	pemJSON := func(pub crypto.PublicKey) string {
		b, err := signing.MarshalPublicKeyPEM(pub)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(string(b))
		return string(js)
	}
	var pp strings.Builder
	pp.WriteString("apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: clusters, version: 1}\nspec:\n  platforms:\n")
	for _, p := range []string{"eu", "us"} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&pp, "  - name: %s\n    publicKey: %s\n", p, pemJSON(k.Public()))
	}
	pp.WriteString("  artifacts:\n  - {match: \"*/demo/**\", platforms: [eu, us], encrypt: true}\n")
	ppol, err := platformpolicy.Parse([]byte(pp.String()), "platform-policy", platformpolicy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ppFile := filepath.Join(t.TempDir(), "platform-policy.yaml")
	if err := os.WriteFile(ppFile, []byte(pp.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := reg.ParseReference(host + "/demo/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publish.Publish(ctx, reg, img, ref, publish.Options{Policy: ppol, Key: publisher})
	if err != nil || !pub.Encrypted {
		t.Fatalf("publishing the encrypted image: %v (encrypted %v)", err, pub != nil && pub.Encrypted)
	}
	enc := pub.Digest.String()
	admissionPolicy := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- name: demo
  images: ["127.0.0.1:*/demo/**"]
  require: signed
  keys: [%s]
  platforms: [eu]
`, pemJSON(publisher.Public()))

	// The release, the optional RBAC, the test's policy.
	bin := buildStepseal(t)
	addr := freeAddr(t)
	port, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	objs := forTest(t, kubetest.Objects(t, "*.yaml"), port)
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == policyCM {
			if err := unstructured.SetNestedField(o.Object, admissionPolicy, "data", admission.PolicyKey); err != nil {
				t.Fatal(err)
			}
		}
	}
	kubetest.Apply(ctx, t, c.Config(), "stepseal-admission-test", objs)
	listNodes := access{"list", "", "nodes", "", "", ""}
	if allowed(ctx, t, kube, listNodes, "") {
		t.Errorf("the release alone lets %s %s", saUser, listNodes)
	}
	b, err := os.ReadFile("optional/nodes-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Apply(ctx, t, c.Config(), "stepseal-admission-test", kubetest.DecodeObjects(t, "optional/nodes-rbac.yaml", b))
	t.Cleanup(func() {
		bg := context.Background()
		_ = kube.RbacV1().ClusterRoleBindings().Delete(bg, "stepseal-admission-nodes", metav1.DeleteOptions{})
		_ = kube.RbacV1().ClusterRoles().Delete(bg, "stepseal-admission-nodes", metav1.DeleteOptions{})
	})
	for _, verb := range []string{"get", "list", "watch"} {
		a := access{verb, "", "nodes", "", "", ""}
		waitFor(t, 30*time.Second, fmt.Sprintf("%s allowed %s", saUser, a), func() bool { return allowed(ctx, t, kube, a, "") })
	}

	// One node per platform, labelled as an admin (the NodeRestriction
	// plugin keeps kubelets from setting the label).
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	nodeEU, nodeUS := "node-eu-"+suffix, "node-us-"+suffix
	for n, p := range map[string]string{nodeEU: "eu", nodeUS: "us"} {
		if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{platformLabel: p}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kube.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{}) })
	}

	sa := saConfig(t, c, kube)
	r := startBinary(t, bin, saKubeconfig(t, sa), addr, freeAddr(t),
		"--platform-label="+platformLabel, "--platform-policy="+ppFile, "--insecure")
	var sec *corev1.Secret
	waitFor(t, 60*time.Second, "the certificate Secret filled and its CA in the webhook configurations", func() bool {
		sec, err = kube.CoreV1().Secrets(systemNS).Get(ctx, certSecret, metav1.GetOptions{})
		return err == nil && len(sec.Data[certresources.CACert]) > 0 && bundlesHave(ctx, t, kube, sec.Data[certresources.CACert])
	})

	tenantNS := c.Namespace(t)
	ensureNamespace(ctx, t, kube, tenantNS, map[string]string{optIn: "enforce"})
	mk := func(nm, nodeName string, sel map[string]string, dry bool) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: nm, Namespace: tenantNS}, Spec: corev1.PodSpec{
			NodeName: nodeName, NodeSelector: sel,
			Containers: []corev1.Container{{Name: "app", Image: enc, ImagePullPolicy: corev1.PullAlways}}}}
		o := metav1.CreateOptions{}
		if dry {
			o.DryRun = []string{metav1.DryRunAll}
		}
		_, err := kube.CoreV1().Pods(tenantNS).Create(ctx, p, o)
		return err
	}
	waitFor(t, 30*time.Second, "the apiserver calling the webhook", func() bool {
		err := mk("probe", nodeUS, nil, true)
		return err != nil && strings.Contains(err.Error(), "stepseal: ")
	})
	if err := mk("on-eu", nodeEU, nil, false); err != nil {
		t.Errorf("bound to the eu node: %v", err)
	}
	if err := mk("pinned-eu", "", map[string]string{platformLabel: "eu"}, false); err != nil {
		t.Errorf("pinned to eu: %v", err)
	}
	wantUS := "container app: image " + enc + ` (rule "demo"): ` + `encrypted image not authorised for this platform: platform "us" is not among rule "demo"'s platforms [eu]`
	for nm, tc := range map[string]struct {
		node string
		sel  map[string]string
		want string
	}{
		"on-us":     {nodeUS, nil, wantUS},
		"pinned-us": {"", map[string]string{platformLabel: "us"}, wantUS},
		"unpinned":  {"", nil, "in a multi-platform cluster a Pod with an encrypted image must be pinned to a platform: spec.nodeSelector " + platformLabel + ": <platform> (or spec.nodeName)"},
	} {
		if err := mk(nm, tc.node, tc.sel, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a denial containing %q", nm, err, tc.want)
		}
	}
	if f := r.forbiddenLogged(); len(f) > 0 {
		t.Errorf("the webhook was refused by the apiserver: %q", f)
	}
}

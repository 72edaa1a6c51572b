package admission

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ita "github.com/in-toto/attestation/go/v1"
	"github.com/in-toto/in-toto-golang/in_toto"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
	"github.com/stepseal/stepseal/pkg/trustroot"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// revocationEnv is a real registry and a real TUF repository over HTTP
// whose role "builds" releases layouts/app.layout: step build.compile,
// signed by the builder's key or a spare one. VSAs are signed with pkg/vsa
// as the controller signs them, their link input a DSSE envelope the
// builder signed; the Decider checks them with the trust root's layout
// digest and revocations, its cache keyed by the TUF versions.
type revocationEnv struct {
	*env
	t              testing.TB
	repo           *repo.Repo
	site           string
	client         *trust.Client
	root           *trustroot.Root
	owner, builder signing.Signer
	spare, targets signing.Signer
	layout         in_toto.Layout
}

const appLayout = "layouts/app.layout"

func newRevocationEnv(t testing.TB) *revocationEnv {
	t.Helper()
	ctx := context.Background()
	r := &revocationEnv{env: newEnv(t), t: t, owner: signingtest.Signer(t), builder: signingtest.Signer(t), targets: signingtest.Signer(t)}
	r.spare = signingtest.Signer(t)
	// Bound and unbound VSA rules: with vsa.layout the VSA must also be of
	// the layout TUF vouches for now; without, only the revocation check
	// ties it to the layout's current state.
	pol, err := ParsePolicy([]byte(r.policyDoc() + fmt.Sprintf(`- name: bound
  images: ["127.0.0.1:*/bound/**"]
  require: vsa
  vsa: {verifier: %q, maxAge: 1h, key: %s, layout: app}
`, verifierID, pemOf(t, r.verifier.Public()))))
	if err != nil {
		t.Fatal(err)
	}
	r.pol = pol

	var keys = map[string]in_toto.Key{}
	var ids []string
	for _, s := range []signing.Signer{r.builder, r.spare} {
		k, err := signing.InTotoKey(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		keys[k.KeyID] = k
		ids = append(ids, k.KeyID)
	}
	r.layout = in_toto.Layout{Type: "layout", Expires: time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339), Keys: keys,
		Steps: []in_toto.Step{{Type: "step", PubKeys: ids, Threshold: 1, SupplyChainItem: in_toto.SupplyChainItem{
			Name: "build.compile", ExpectedMaterials: [][]string{{"ALLOW", "*"}}, ExpectedProducts: [][]string{{"ALLOW", "*"}}}}},
		Inspect: []in_toto.Inspection{}}

	dir := t.TempDir()
	r.site = t.TempDir()
	online := signingtest.Signer(t)
	if r.repo, err = repo.Init(ctx, dir, repo.InitOptions{RootSigners: []signing.Signer{signingtest.Signer(t)}, TargetsSigners: []signing.Signer{r.targets}, Online: online}); err != nil {
		t.Fatal(err)
	}
	r.accept(r.repo.Delegate(ctx, repo.Delegation{Parent: "targets", Name: "builds", Paths: []string{"layouts/*"}, Keys: []crypto.PublicKey{r.owner.Public()}}, r.targets))
	r.release(r.layout)
	srv := httptest.NewServer(repo.Handler(r.site))
	t.Cleanup(srv.Close)
	if r.client, err = trust.NewClient(ctx, trust.ClientOptions{Source: srv.URL + "/metadata", CacheDir: t.TempDir(), BootstrapRoot: r.repo.RootBytes()}); err != nil {
		t.Fatal(err)
	}
	r.refresh()
	r.root = trustroot.New(r.client)
	return r
}

func (r *revocationEnv) accept(p []byte, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.repo.Accept(context.Background(), p); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.repo.Publish(context.Background(), r.site); err != nil {
		r.t.Fatal(err)
	}
}

// release signs l by the owner and releases it as layouts/app.layout.
func (r *revocationEnv) release(l in_toto.Layout) {
	r.t.Helper()
	mb, err := layout.Sign(context.Background(), l, r.owner)
	if err != nil {
		r.t.Fatal(err)
	}
	data, err := json.Marshal(mb)
	if err != nil {
		r.t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	p, err := r.repo.Release(context.Background(), "builds", appLayout, repo.Target{SHA256: hex.EncodeToString(sum[:]), Length: int64(len(data))}, r.owner)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.repo.Accept(context.Background(), p); err != nil {
		r.t.Fatal(err)
	}
	if err := r.repo.AddTargetFile(appLayout, data); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.repo.Publish(context.Background(), r.site); err != nil {
		r.t.Fatal(err)
	}
}

func (r *revocationEnv) refresh() {
	r.t.Helper()
	if _, err := r.client.Refresh(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

// decider checks VSAs as `stepseal admission check|serve --trust` does.
func (r *revocationEnv) decider() *Decider {
	tk := TrustKeys{Client: r.client}
	return r.env.decider(func(c *Config) {
		c.Cache = NewCache(CacheOptions{TTL: time.Hour})
		c.Keys, c.TrustVersion = tk, tk.Version
		c.VSA = RegistryVSA{Registry: r.c, Revocations: r.root.Revocations, LayoutDigest: func(ctx context.Context, nm string) (string, error) {
			d, err := r.root.Layout(ctx, nm)
			if err != nil {
				return "", err
			}
			return store.Digest(d.Data), nil
		}}
	})
}

// attestVSA attaches to d a PASSED VSA, made now against the layout TUF
// vouches for now, whose inputs are a link of build.compile the builder
// signed and the run's provenance (signers as the controller reads them,
// vsa.SignerKeyIDs); withSigners false makes a VSA of the older format.
func (r *revocationEnv) attestVSA(d name.Digest, withSigners bool) {
	r.t.Helper()
	ctx := context.Background()
	doc, err := r.root.Layout(ctx, "app")
	if err != nil {
		r.t.Fatal(err)
	}
	builderID, _ := r.builder.KeyID()
	var inputs []vsa.Input
	for _, in := range []struct {
		name   string
		signer signing.Signer
	}{{seal.LinkName("build.compile", builderID), r.builder}, {"ns/run.provenance", signingtest.Signer(r.t)}} {
		env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, []byte(`{"name":"`+in.name+`"}`), in.signer)
		if err != nil {
			r.t.Fatal(err)
		}
		data, _ := json.Marshal(env)
		input := vsa.Input{URI: vsa.InputURI(in.name, 3), Digest: map[string]string{"sha256": strings.TrimPrefix(store.Digest(data), "sha256:")}}
		if withSigners {
			if input.Signers, err = vsa.SignerKeyIDs(data); err != nil {
				r.t.Fatal(err)
			}
		}
		inputs = append(inputs, input)
	}
	sub, err := vsa.ImageSubject(d.String())
	if err != nil {
		r.t.Fatal(err)
	}
	vs, err := signing.NewSigner(r.verifier)
	if err != nil {
		r.t.Fatal(err)
	}
	env, _, err := vsa.Sign(ctx, vsa.Summary{VerifierID: verifierID, Time: time.Now(), Result: vsa.Passed,
		ResourceURI: vsa.ResourceURI(d.Context().RegistryStr(), d.Context().RepositoryStr()), Subjects: []*ita.ResourceDescriptor{sub},
		PolicyURI: vsa.PolicyURI(doc.Path, doc.Role, doc.RoleVersion), PolicyDigest: map[string]string{"sha256": strings.TrimPrefix(store.Digest(doc.Data), "sha256:")},
		Inputs: inputs}, vs)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.c.Attest(ctx, d, env, vsa.PredicateType); err != nil {
		r.t.Fatal(err)
	}
}

// revoke releases the layout with the builder's key revoked (`stepseal
// layout revoke-key`) and refreshes the client; it returns the key ID and
// what names the revoking layout version.
func (r *revocationEnv) revoke(reason string) (string, string) {
	r.t.Helper()
	id, _ := r.builder.KeyID()
	l, err := layout.RevokeKey(r.layout, id, reason)
	if err != nil {
		r.t.Fatal(err)
	}
	r.release(l)
	r.refresh()
	doc, err := r.root.Layout(context.Background(), "app")
	if err != nil {
		r.t.Fatal(err)
	}
	return id, doc.Describe()
}

// TestVSARevokedInput (W12) with a real TUF repository: digests admitted
// by their VSAs — under a rule bound to the layout and one that is not —
// are refused once the layout revokes the key that signed a link input and
// the client refreshes, although their admission was cached; the refusal
// is vsa.RevokedInputError naming the key, the input's step and the
// revoking TUF role version. A VSA whose inputs were signed by another
// key is unaffected by the revocation under the unbound rule. A VSA of the
// older format is refused once revocations are checked.
func TestVSARevokedInput(t *testing.T) {
	ctx := context.Background()
	r := newRevocationEnv(t)
	bound, unbound, older := r.push("bound/app"), r.push("builds/app"), r.push("builds/older")
	r.attestVSA(bound, true)
	r.attestVSA(unbound, true)
	r.attestVSA(older, false)
	d := r.decider()
	wantAllowed(t, d.Decide(ctx, pod(bound.String()), nil))
	wantAllowed(t, d.Decide(ctx, pod(unbound.String()), nil))
	wantDenied(t, d.Decide(ctx, pod(older.String()), nil), vsa.ErrNoInputSigners, `rule "builds"`, vsa.ExtInputSigners)

	// The spare key stays in the step, so revoking the builder's needs no
	// rotation first.
	id, by := r.revoke("laptop stolen")
	if !strings.Contains(by, "TUF role builds v") {
		t.Fatalf("revoking version %q", by)
	}
	for img, rule := range map[name.Digest]string{bound: "bound", unbound: "builds"} {
		dec := d.Decide(ctx, pod(img.String()), nil)
		wantDenied(t, dec, vsa.ErrRevokedInput, img.String(), `rule "`+rule+`"`, id, `step "build.compile"`, by, "laptop stolen")
		var rie *vsa.RevokedInputError
		if !errors.As(dec.Err(), &rie) || rie.KeyID != id || rie.By != by || rie.Step != "build.compile" {
			t.Errorf("%s: %v", rule, dec.Err())
		}
		if !errors.Is(dec.Err(), reject.ErrUnauthorized) || errors.Is(dec.Err(), vsa.ErrPolicyDigest) {
			t.Errorf("%s: reason of %v", rule, dec.Err())
		}
		t.Logf("rule %s after the revocation: %s", rule, dec.Message())
	}
	// A VSA made after the revocation, against the layout that revokes
	// the builder's key, whose link input the spare key signed: admitted.
	fresh := r.push("bound/fresh")
	r.builder = r.spare
	r.attestVSA(fresh, true)
	wantAllowed(t, d.Decide(ctx, pod(fresh.String()), nil))
}

// TestAPIServerDeniesRevokedVSA (W12 end to end): a real kube-apiserver
// calls the validating webhook over TLS; a Pod of a digest whose VSA
// admits it is created; the layout then revokes the key that signed one of
// the VSA's inputs and the trust client refreshes (what `serve --trust`
// does every --trust-refresh); the next Pod of the same digest is refused,
// and the apiserver's error names the key, the step and the revoking TUF
// version.
func TestAPIServerDeniesRevokedVSA(t *testing.T) {
	r := newRevocationEnv(t)
	img := r.push("bound/app")
	r.attestVSA(img, true)
	url, caPEM := serveTLS(t, Mux(r.decider(), nil))

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
	fail, none, timeout := admregv1.Fail, admregv1.SideEffectClassNone, int32(10)
	cfgName := "stepseal-revoked-" + ns[len(ns)-8:]
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
	mk := func(nm, image string) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: nm, Namespace: ns}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
		_, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	}
	// The apiserver picks the configuration up asynchronously: wait until
	// an image no rule covers is refused.
	var probe error
	for i := 0; i < 100 && probe == nil; i++ {
		if probe = mk(fmt.Sprintf("probe-%d", i), r.host+"/nowhere/x@sha256:"+strings.Repeat("0", 64)); probe == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if probe == nil || !strings.Contains(probe.Error(), "stepseal: ") {
		t.Fatalf("the webhook is not called: %v", probe)
	}

	if err := mk("before", img.String()); err != nil {
		t.Fatalf("the digest's VSA admits it: %v", err)
	}
	id, by := r.revoke("laptop stolen")
	err = mk("after", img.String())
	if err == nil {
		t.Fatal("a Pod of a digest whose VSA input was signed by a revoked key was created")
	}
	for _, s := range []string{"stepseal: ", "container app: image " + img.String() + ` (rule "bound")`, "signed by in-toto key " + id,
		`step "build.compile"`, "revoked by layout " + by, "laptop stolen"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("denial %q does not say %q", err, s)
		}
	}
	t.Logf("denied: %v", err)
}

// BenchmarkRevocationLookup: what the revoked-input check adds to a VSA
// check that misses the verdict cache: the layout the VSA names, from the
// TUF client's verified cache (no request), parsed for its revocations.
func BenchmarkRevocationLookup(b *testing.B) {
	r := newRevocationEnv(b)
	ctx := context.Background()
	doc, err := r.root.Layout(ctx, "app")
	if err != nil {
		b.Fatal(err)
	}
	uri := vsa.PolicyURI(doc.Path, doc.Role, doc.RoleVersion)
	for b.Loop() {
		if _, err := r.root.Revocations(ctx, uri); err != nil {
			b.Fatal(err)
		}
	}
}

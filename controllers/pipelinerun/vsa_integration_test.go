package pipelinerun

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/in-toto/in-toto-golang/in_toto"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
	tufrepo "github.com/stepseal/stepseal/pkg/trust/repo"
	"github.com/stepseal/stepseal/pkg/vsa"
)

const testVerifierID = "https://stepseal.dev/controller/test"

// testLayout is the owner-signed layout of a pipeline of one task "build"
// whose steps are steps, each signed by the controller's key (functionary).
func testLayout(t testing.TB, owner signing.Signer, functionary signing.Verifier, steps ...string) []byte {
	t.Helper()
	k, err := signing.InTotoKey(functionary.Public())
	if err != nil {
		t.Fatal(err)
	}
	l := in_toto.Layout{Type: "layout", Expires: time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339), Keys: map[string]in_toto.Key{k.KeyID: k}}
	for _, s := range steps {
		l.Steps = append(l.Steps, in_toto.Step{Type: "step", PubKeys: []string{k.KeyID}, Threshold: 1, SupplyChainItem: in_toto.SupplyChainItem{
			Name: "build." + s, ExpectedMaterials: [][]string{{"ALLOW", "*"}}, ExpectedProducts: [][]string{{"ALLOW", "*"}}}})
	}
	mb, err := layout.Sign(context.Background(), l, owner)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(mb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveTUF releases layouts (target path → bytes) through a TUF repository
// (role "layouts" owns layouts/*, its key is owner) served over loopback
// HTTP; it returns the metadata URL and the bootstrap root.
func serveTUF(t testing.TB, owner signing.Signer, layouts map[string][]byte) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	dir, site := t.TempDir(), t.TempDir()
	targets, online := signingtest.Signer(t), signingtest.Signer(t)
	r, err := tufrepo.Init(ctx, dir, tufrepo.InitOptions{RootSigners: []signing.Signer{signingtest.Signer(t)}, TargetsSigners: []signing.Signer{targets}, Online: online})
	if err != nil {
		t.Fatal(err)
	}
	accept := func(p []byte) {
		t.Helper()
		if r, err = tufrepo.Open(dir, tufrepo.OpenOptions{Online: online}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Accept(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	p, err := r.Delegate(ctx, tufrepo.Delegation{Name: "layouts", Paths: []string{"layouts/*"}, Keys: []crypto.PublicKey{owner.Public()}}, targets)
	if err != nil {
		t.Fatal(err)
	}
	accept(p)
	for path, data := range layouts {
		sum := sha256.Sum256(data)
		if p, err = r.Release(ctx, "layouts", path, tufrepo.Target{SHA256: hex.EncodeToString(sum[:]), Length: int64(len(data))}, owner); err != nil {
			t.Fatal(err)
		}
		accept(p)
		if err := r.AddTargetFile(path, data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Publish(ctx, site); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tufrepo.Handler(site))
	t.Cleanup(srv.Close)
	return srv.URL + "/metadata", r.RootBytes()
}

// TestIntegrationVSA runs both controllers against a real kube-apiserver,
// a real registry and a TUF repository over HTTP that releases two layouts:
//
//   - "release": its one child's links verify against its layout → a PASSED
//     VSA, signed by the verifier key of the system namespace, stored
//     (findable by the annotation's digest), attached to the image (cosign
//     .att / referrer), naming the layout's TUF path and digest and every
//     input with its log index; vsa.Verify accepts it as admission would;
//   - "unscanned": its layout wants a step "build.scan" the run lacks → a
//     FAILED VSA, which vsa.Verify refuses (vsa.ErrFailed);
//   - "adhoc": no layout released → no VSA, a VSASkipped Event, and the run
//     is still signed.
func TestIntegrationVSA(t *testing.T) {
	host := testregistry.Start(t)
	owner := signingtest.Signer(t)
	vsaSecret, vsaPub := controllertest.SigningSecret(t, "vsa-key", "pw2")

	// The functionary is the controller's signing key, known once the API is
	// set up; the TUF repository must exist before the controllers start.
	// So: set up the API first with VSA on and trust.* added after.
	api := controllertest.StartAPI(t, 3*time.Minute, map[string]string{
		settings.KeyBackends: "dir,tlog,oci", settings.KeyTLogDir: t.TempDir(), settings.KeyOCIInsecure: "true",
	})
	ctx, ns := api.Ctx, api.NS
	fv, err := signing.NewVerifier(api.Pub)
	if err != nil {
		t.Fatal(err)
	}
	release := testLayout(t, owner, fv, "prepare", "build")
	layouts := map[string][]byte{
		"layouts/release.layout":   release,
		"layouts/unscanned.layout": testLayout(t, owner, fv, "prepare", "build", "scan"),
	}
	url, root := serveTUF(t, owner, layouts)
	vsaSecret.Namespace, vsaSecret.ResourceVersion = api.SystemNS, ""
	if _, err := api.Kube.CoreV1().Secrets(api.SystemNS).Create(ctx, vsaSecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := api.Kube.CoreV1().ConfigMaps(api.SystemNS).Get(ctx, settings.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[settings.KeyTrustURL], cm.Data[settings.KeyTrustRoot], cm.Data[settings.KeyTrustCache] = url, string(root), t.TempDir()
	cm.Data[settings.KeyVSAEnabled], cm.Data[settings.KeyVSAVerifierID], cm.Data[settings.KeyVSASecret] = "true", testVerifierID, "vsa-key"
	if _, err := api.Kube.CoreV1().ConfigMaps(api.SystemNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	shared := controllertest.NewShared(t)
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, api.Config(), api.SystemNS, nil,
		taskrun.NewController(shared), NewController(shared))
	for deadline := time.Now().Add(30 * time.Second); shared.Trust() == nil || shared.Trust().Root() == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the controller's trust root was not refreshed within 30 s")
		}
	}

	// One PipelineRun of one child "build" (steps prepare, build) that
	// published a real image.
	runPipeline := func(prName, repo string) (*v1.PipelineRun, name.Digest) {
		t.Helper()
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := oci.ParseReference(host+"/"+repo+":v1", oci.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		ref, err := oci.Push(ctx, img, tag, oci.WithInsecure(), oci.WithProgress(nil))
		if err != nil {
			t.Fatal(err)
		}
		pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: prName, Namespace: ns},
			Spec: v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{Tasks: []v1.PipelineTask{
				{Name: "build", TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "build", Image: "alpine:3"}}}}},
			}}}}
		if pr, err = api.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		spec := &v1.TaskSpec{Steps: []v1.Step{{Name: "prepare", Image: "alpine:3"}, {Name: "build", Image: "golang:1.26"}}}
		tr, err := api.Tekton.TektonV1().TaskRuns(ns).Create(ctx, kubetest.ChildTaskRun(pr, "build", spec), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		results := []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(host + "/" + repo + ":v1")},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(ref.DigestStr())},
		}
		if tr, err = kubetest.FinishTaskRun(ctx, api.Tekton, tr, kubetest.FinishOptions{Results: results}); err != nil {
			t.Fatal(err)
		}
		if pr, err = kubetest.FinishPipelineRun(ctx, api.Tekton, pr, kubetest.PipelineFinishOptions{TaskRuns: []*v1.TaskRun{tr}}); err != nil {
			t.Fatal(err)
		}
		return kubetest.WaitPipelineRunSigned(ctx, t, api.Tekton, ns, pr.Name), ref
	}
	ds, err := dirstore.Open(api.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	vsaVerifier, err := signing.NewVerifier(vsaPub)
	if err != nil {
		t.Fatal(err)
	}
	expect := func(ref name.Digest, layoutBytes []byte) vsa.Expect {
		return vsa.Expect{Key: vsaVerifier, VerifierID: testVerifierID, SubjectDigest: ref.DigestStr(),
			ResourceURI:  vsa.ResourceURI(ref.Context().RegistryStr(), ref.Context().RepositoryStr()),
			PolicyDigest: "sha256:" + hex.EncodeToString(sha256Of(layoutBytes))}
	}
	stored := func(pr *v1.PipelineRun) []byte {
		t.Helper()
		d := pr.Annotations[annotations.VSA]
		if d == "" || strings.Contains(d, ",") {
			t.Fatalf("%s: stepseal.dev/vsa %q, want one digest (annotations %v)", pr.Name, d, pr.Annotations)
		}
		e, err := ds.Fetch(ctx, d)
		if err != nil {
			t.Fatalf("%s: VSA %s not in the store: %v", pr.Name, d, err)
		}
		return e.Data
	}

	// PASSED.
	pr, ref := runPipeline("release", "team/app")
	data := stored(pr)
	v, err := vsa.Verify(ctx, data, expect(ref, release))
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if got := v.Predicate.GetPolicy().GetUri(); !strings.HasPrefix(got, "tuf:layouts/release.layout?role=layouts&version=") {
		t.Errorf("policy.uri %q", got)
	}
	var links, logged int
	for _, in := range v.Predicate.GetInputAttestations() {
		if strings.HasSuffix(strings.SplitN(in.GetUri(), "#", 2)[0], ".link") {
			links++
		}
		if strings.Contains(in.GetUri(), "#log-index=") {
			logged++
		}
	}
	if n := len(v.Predicate.GetInputAttestations()); links != 2 || n != 4 || logged != n {
		t.Errorf("inputs %v: want 2 links and 2 provenance, each with its log index", v.Predicate.GetInputAttestations())
	}
	// Every input names its signer, the namespace's key (links and
	// provenance alike), so admission can refuse the VSA once that key is
	// revoked: a lookup revoking it refuses the VSA (all four inputs).
	runKey, _ := fv.KeyID()
	for _, in := range v.Inputs {
		if len(in.Signers) != 1 || in.Signers[0] != runKey {
			t.Errorf("input %s: signers %v, want [%s]", in.URI, in.Signers, runKey)
		}
	}
	revokedExp := expect(ref, release)
	revokedExp.Revocations = func(_ context.Context, uri string) (*vsa.Revocations, error) {
		if uri != v.Predicate.GetPolicy().GetUri() {
			t.Errorf("revocations looked up for %q", uri)
		}
		return &vsa.Revocations{By: "layouts/release.layout (TUF role layouts v9)", Keys: map[string]string{runKey: "test"}}, nil
	}
	var rie *vsa.RevokedInputError
	if _, err := vsa.Verify(ctx, data, revokedExp); !errors.As(err, &rie) || rie.KeyID != runKey || rie.More != 3 {
		t.Errorf("the run's key revoked: %v", err)
	}
	slsaVerifierAccepts(t, data, vsaPub, ref, testVerifierID)
	// Attached to the image, signed by the verifier key: what admission reads.
	atts, err := oci.VerifyAttestations(ctx, ref, vsaPub, []oci.AttestationOption{oci.WithPredicateType(vsa.PredicateType)}, oci.WithInsecure())
	if err != nil || len(atts) != 1 {
		t.Fatalf("VSA on %s: %d, %v", ref, len(atts), err)
	}
	// Not signed by the run's signing key: the tenant-facing key cannot
	// stand in for the verifier's.
	exp := expect(ref, release)
	exp.Key = fv
	_, err = vsa.Verify(ctx, data, exp)
	rejecttest.Is(t, "VSA checked with the signing key", err, reject.ErrSignature)
	waitEvent(ctx, t, api, ns, pr.Name, ReasonVSASigned)

	// An earlier attempt stored and attached the VSA, then died before
	// annotating: the retry reuses those bytes, so the image still has one.
	got, err := api.Tekton.TektonV1().PipelineRuns(ns).Get(ctx, pr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Annotations, got.Finalizers = nil, []string{annotations.FinalizerPipelineRun}
	if _, err := api.Tekton.TektonV1().PipelineRuns(ns).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if again := kubetest.WaitPipelineRunSigned(ctx, t, api.Tekton, ns, pr.Name); again.Annotations[annotations.VSA] != pr.Annotations[annotations.VSA] {
		t.Errorf("the retry signed another VSA: %s, was %s", again.Annotations[annotations.VSA], pr.Annotations[annotations.VSA])
	}
	if atts, err = oci.VerifyAttestations(ctx, ref, vsaPub, []oci.AttestationOption{oci.WithPredicateType(vsa.PredicateType)}, oci.WithInsecure()); err != nil || len(atts) != 1 {
		t.Errorf("after the retry, VSAs on %s: %d, %v", ref, len(atts), err)
	}

	// FAILED.
	pr, ref = runPipeline("unscanned", "team/unscanned")
	_, err = vsa.Verify(ctx, stored(pr), expect(ref, layouts["layouts/unscanned.layout"]))
	if !errors.Is(err, vsa.ErrFailed) {
		t.Fatalf("unscanned: %v, want %v", err, vsa.ErrFailed)
	}
	if msg := waitEvent(ctx, t, api, ns, pr.Name, ReasonVSAFailed); !strings.Contains(msg, "build.scan") {
		t.Errorf("VSAFailed Event does not name the missing step: %s", msg)
	}

	// No layout released: no VSA, and why.
	pr, _ = runPipeline("adhoc", "team/adhoc")
	if d, ok := pr.Annotations[annotations.VSA]; ok {
		t.Errorf("adhoc: a VSA %s without a trusted layout", d)
	}
	if msg := waitEvent(ctx, t, api, ns, pr.Name, ReasonVSASkipped); !strings.Contains(msg, "no trusted layout for pipeline adhoc") {
		t.Errorf("VSASkipped: %s", msg)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// waitEvent waits for an Event of reason on the PipelineRun and returns its
// message.
func waitEvent(ctx context.Context, t *testing.T, api *controllertest.API, ns, pr, reason string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		evs, err := api.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == pr && e.Reason == reason {
				return e.Message
			}
		}
	}
	t.Fatalf("no %s Event on PipelineRun %s", reason, pr)
	return ""
}

// slsaVerifierAccepts runs `slsa-verifier verify-vsa` (hack/install-test-
// deps.sh) on the controller's VSA; without the binary it says so and
// returns, in CI (CI set) it fails.
func slsaVerifierAccepts(t *testing.T, data []byte, pub crypto.PublicKey, ref name.Digest, verifierID string) {
	t.Helper()
	bin, err := exec.LookPath("slsa-verifier")
	if err != nil {
		if out, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			p := filepath.Join(strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0], "bin", "slsa-verifier")
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("slsa-verifier not installed: hack/install-test-deps.sh installs it")
		}
		t.Log("slsa-verifier not installed (hack/install-test-deps.sh): the controller's VSA was not checked with it")
		return
	}
	dir := t.TempDir()
	pem, err := signing.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyID, err := signing.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "verifier.pub"), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vsa.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "verify-vsa", "--attestation-path", filepath.Join(dir, "vsa.json"), "--subject-digest", ref.DigestStr(),
		"--verifier-id", verifierID, "--resource-uri", vsa.ResourceURI(ref.Context().RegistryStr(), ref.Context().RepositoryStr()),
		"--verified-level", vsa.LevelLayout, "--public-key-path", filepath.Join(dir, "verifier.pub"), "--public-key-id", keyID)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("slsa-verifier refused the controller's VSA: %v\n%s", err, out)
	}
}

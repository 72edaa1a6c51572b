package taskrun

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/rekor"
	"github.com/stepseal/stepseal/pkg/rekor/rekortest"
)

// rekorBackend opens the "rekor" backend from settings keys, as the
// controller does.
func rekorBackend(t *testing.T, data map[string]string) lifecycle.Backend {
	t.Helper()
	data[settings.KeyBackends] = "dir,rekor"
	cfg, err := settings.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	kind, ok := settings.LookupBackend(settings.BackendRekor)
	if !ok {
		t.Fatal("no rekor backend")
	}
	b, err := kind.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The "rekor" backend logs the TaskRun's provenance in a real Rekor v2 log
// and attaches the verified Sigstore bundle to the image output in a real
// registry, before the TaskRun is annotated; a resumed attempt (the same
// envelope: Rekor answers 409) attaches the same bundle, not a second one.
func TestReconcileLogsProvenanceInRekor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry and a Rekor log")
	}
	srv := rekortest.Start(t, "")
	host := testregistry.Start(t)
	ctx := context.Background()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := oci.ParseReference(host+"/team/app:v1", oci.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := oci.Push(ctx, img, tag, oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	tr := minimal(func(tr *v1.TaskRun) {
		tr.Status.Results = []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(host + "/team/app:v1")},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(ref.DigestStr())},
		}
	})
	trustedRoot := filepath.Join(t.TempDir(), "trusted_root.json")
	tr0, err := rekor.TrustedRoot(time.Now().Add(-time.Hour), srv.Log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trustedRoot, tr0, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, tr)
	f.Signing.OpenBackends = func(*settings.Config) ([]lifecycle.Backend, error) {
		return []lifecycle.Backend{{Name: "test", Store: f.Store}, rekorBackend(t, map[string]string{
			settings.KeyRekorURL: srv.Log.URL, settings.KeyRekorTilesURL: srv.Log.TilesURL,
			settings.KeyRekorTrustedRoot: trustedRoot, settings.KeyOCIInsecure: "true",
		})}, nil
	}
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); got.Annotations[annotations.Signed] != "true" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	c, err := oci.New(oci.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	var first int64 = -1
	check := func(when string) {
		t.Helper()
		bs, err := c.Bundles(ctx, ref)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if len(bs) != 1 {
			t.Fatalf("%s: %d bundles on %s, want 1", when, len(bs), ref)
		}
		v, err := rekor.Verify(bs[0], rekor.VerifyOptions{Key: f.Pub, Logs: []rekor.Log{srv.Log}, Subject: ref.DigestStr()})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if v.PredicateType != attest.PredicateSLSAProvenanceV1 || (first >= 0 && v.LogIndex != first) {
			t.Fatalf("%s: %s at index %d (first %d)", when, v.PredicateType, v.LogIndex, first)
		}
		first = v.LogIndex
	}
	check("after signing")

	// An earlier process logged, attached and stored, then died before
	// annotating.
	got := f.get(tr)
	got.Annotations = nil
	got.Finalizers = []string{annotations.FinalizerTaskRun}
	if _, err := f.Client.TektonV1().TaskRuns(tr.Namespace).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	check("after resuming")
}

// A Rekor log that cannot be reached keeps the TaskRun unsigned (retried).
func TestReconcileRekorDownRetries(t *testing.T) {
	tr := minimal(func(tr *v1.TaskRun) {
		tr.Status.Results = []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("127.0.0.1:1/team/app")},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("sha256:" + appDigest)},
		}
	})
	srvLog := rekor.Log{Origin: "rekor.local", PublicKey: mustEd25519Pub(t)}
	root, err := rekor.TrustedRoot(time.Now(), srvLog)
	if err != nil {
		t.Fatal(err)
	}
	trustedRoot := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(trustedRoot, root, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, map[string]string{settings.KeyMaxRetries: "5", settings.KeyRetryBaseDelay: "10ms"}, tr)
	f.Signing.OpenBackends = func(*settings.Config) ([]lifecycle.Backend, error) {
		return []lifecycle.Backend{{Name: "test", Store: f.Store}, rekorBackend(t, map[string]string{
			settings.KeyRekorURL: "http://127.0.0.1:1", settings.KeyRekorTrustedRoot: trustedRoot, settings.KeyOCIInsecure: "true",
		})}, nil
	}
	if ok, _ := controller.IsRequeueKey(f.reconcile(tr)); !ok {
		t.Fatal("not retried")
	}
	if got := f.get(tr); got.Annotations[annotations.Signed] != "" {
		t.Fatalf("annotated %v while Rekor was unreachable", got.Annotations)
	}
}

func mustEd25519Pub(t *testing.T) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestIntegrationRekor: the controller on a real kube-apiserver, configured
// through stepseal-config (backends dir,rekor and the transparency.rekor.*
// keys), signs a TaskRun that pushed an image to a real registry: its
// provenance is logged in a real rekor-server-posix and the bundle on the
// image verifies for the image's digest with the Secret's key.
func TestIntegrationRekor(t *testing.T) {
	srv := rekortest.Start(t, "")
	host := testregistry.Start(t)
	trustedRoot := filepath.Join(t.TempDir(), "trusted_root.json")
	root, err := rekor.TrustedRoot(time.Now().Add(-time.Hour), srv.Log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trustedRoot, root, 0o644); err != nil {
		t.Fatal(err)
	}
	api := controllertest.StartAPI(t, 2*time.Minute, map[string]string{
		settings.KeyBackends: "dir,rekor", settings.KeyOCIInsecure: "true",
		settings.KeyRekorURL: srv.Log.URL, settings.KeyRekorTilesURL: srv.Log.TilesURL, settings.KeyRekorTrustedRoot: trustedRoot,
	})
	ctx, ns := api.Ctx, api.NS
	controllertest.RunControllers(logging.WithLogger(ctx, zaptest.NewLogger(t).Sugar()), t, api.Config(), api.SystemNS, nil, NewController(controllertest.NewShared(t)))

	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := oci.ParseReference(host+"/team/app:v1", oci.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := oci.Push(ctx, img, tag, oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: ns},
		Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Name: "build", Image: "golang:1.26"}}}},
	}
	if tr, err = api.Tekton.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	results := []v1.TaskRunResult{
		{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(host + "/team/app:v1")},
		{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(ref.DigestStr())},
	}
	if _, err := kubetest.FinishTaskRun(ctx, api.Tekton, tr, kubetest.FinishOptions{Results: results}); err != nil {
		t.Fatal(err)
	}
	kubetest.WaitTaskRunSigned(ctx, t, api.Tekton, ns, tr.Name)

	c, err := oci.New(oci.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	bs, err := c.Bundles(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rekor.VerifyAny(bs, rekor.VerifyOptions{Key: api.Pub, Logs: []rekor.Log{srv.Log}, Subject: ref.DigestStr()})
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || v.PredicateType != attest.PredicateSLSAProvenanceV1 {
		t.Fatalf("%d bundles, %s", len(bs), v.PredicateType)
	}
}

package taskrun

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/controller"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/backends"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/oci"
)

// The "oci" backend attaches the provenance to the TaskRun's image output
// (IMAGE_URL/IMAGE_DIGEST) in a real registry, where pkg/oci's cosign-format
// verification finds it; a resumed attempt does not attach a second copy.
func TestReconcileAttachesProvenanceToImages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
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
	f := newFixture(t, nil, tr)
	f.Signing.OpenBackends = func(*settings.Config) ([]lifecycle.Backend, error) {
		return []lifecycle.Backend{{Name: "test", Store: f.Store}, {Name: "oci", Images: &backends.OCI{Insecure: true}}}, nil
	}
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); got.Annotations[annotations.Signed] != "true" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	check := func(when string) {
		t.Helper()
		atts, err := oci.VerifyAttestations(ctx, ref, f.Pub, []oci.AttestationOption{oci.WithPredicateType(attest.PredicateSLSAProvenanceV1)}, oci.WithInsecure())
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if len(atts) != 1 {
			t.Errorf("%s: %d provenance attestations on %s, want 1", when, len(atts), ref)
		}
	}
	check("after signing")

	// An earlier process attached and stored, then died before annotating.
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

// A registry that refuses the attestation keeps the TaskRun unsigned.
func TestReconcileImageAttachFailureRetries(t *testing.T) {
	tr := minimal(func(tr *v1.TaskRun) {
		tr.Status.Results = []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("127.0.0.1:1/team/app")},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("sha256:" + appDigest)},
		}
	})
	f := newFixture(t, map[string]string{settings.KeyMaxRetries: "5", settings.KeyRetryBaseDelay: "10ms"}, tr)
	f.Signing.OpenBackends = func(*settings.Config) ([]lifecycle.Backend, error) {
		return []lifecycle.Backend{{Name: "test", Store: f.Store}, {Name: "oci", Images: &backends.OCI{Insecure: true}}}, nil
	}
	if ok, _ := controller.IsRequeueKey(f.reconcile(tr)); !ok {
		t.Fatal("not retried")
	}
	if got := f.get(tr); got.Annotations[annotations.Signed] != "" {
		t.Fatalf("annotated %v while the registry was unreachable", got.Annotations)
	}
}

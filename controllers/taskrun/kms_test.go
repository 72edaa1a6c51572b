package taskrun

import (
	"context"
	"testing"

	// sigstore's in-process KMS provider (fakekms://): no real KMS runs
	// here; the controller's main links the four real providers.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/signing"
)

// signer.kms.<namespace> signs that namespace's TaskRuns with the KMS key;
// the links and provenance verify with the KMS key's public key, not the
// Secret's.
func TestReconcileSignsWithKMS(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	f := newFixture(t, map[string]string{settings.KeySignerKMS + "." + tr.Namespace: "fakekms://team"}, tr)
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); got.Annotations[annotations.Signed] != "true" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	s, err := f.Signing.Signer(context.Background(), tr.Namespace, f.Config.Load())
	if err != nil {
		t.Fatal(err)
	}
	if secretID, _ := signing.KeyID(f.Pub); controllertest.KeyID(t, s) == secretID {
		t.Fatal("the namespace's KMS key was not used")
	}
	verifyStored(t, f.Store, s.Public(), buildPushRun, buildPushSteps, 1)
}

package taskrun

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	// sigstore's in-process KMS provider (fakekms://): no real KMS runs
	// here; the controller's main links the four real providers.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/stepseal/stepseal/controllers/settings"
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
	if got := f.get(tr); got.Annotations[AnnotationSigned] != "true" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	s, err := f.r.Signer(context.Background(), tr.Namespace, f.r.Config.Load())
	if err != nil {
		t.Fatal(err)
	}
	if secretID, _ := signing.KeyID(f.pub); mustKeyID(t, s) == secretID {
		t.Fatal("the namespace's KMS key was not used")
	}
	verifyStored(t, f.store, s.Public(), buildPushRun, buildPushSteps, 1)
}

// For a namespace the first configured of signer.kms.<ns>, the Secret
// <signer.secret>-<ns>, signer.kms, the Secret <signer.secret> signs.
func TestSignerPrecedence(t *testing.T) {
	def, defPub := signingSecret(t, "signing-secrets", "pw")
	teamB, teamBPub := signingSecret(t, "signing-secrets-team-b", "pw")
	secrets := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, s := range []*corev1.Secret{def, teamB} {
		if err := secrets.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	r := &Reconciler{Secrets: corelisters.NewSecretLister(secrets), SystemNamespace: systemNS, Shared: NewShared()}
	ctx := context.Background()
	id := func(cfg *settings.Config, ns string) string {
		t.Helper()
		s, err := r.Signer(ctx, ns, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return mustKeyID(t, s)
	}
	secretOnly := settings.Defaults()
	withKMS, err := settings.Parse(map[string]string{settings.KeySignerKMS: "fakekms://default", settings.KeySignerKMS + ".team-c": "fakekms://c"})
	if err != nil {
		t.Fatal(err)
	}
	defID, _ := signing.KeyID(defPub)
	teamBID, _ := signing.KeyID(teamBPub)
	if got := id(secretOnly, "team-a"); got != defID {
		t.Error("team-a without KMS: not the default Secret")
	}
	if got := id(secretOnly, "team-b"); got != teamBID {
		t.Error("team-b: not its own Secret")
	}
	if got := id(withKMS, "team-b"); got != teamBID {
		t.Error("team-b with signer.kms: its own Secret must still win")
	}
	kmsDefault := id(withKMS, "team-a")
	if kmsDefault == defID || kmsDefault == teamBID {
		t.Error("team-a with signer.kms: not the KMS key")
	}
	if id(withKMS, "team-x") != kmsDefault {
		t.Error("the default KMS signer is not cached per URI")
	}
	if c := id(withKMS, "team-c"); c == kmsDefault || c == defID {
		t.Error("team-c: not its signer.kms.team-c key")
	}
	if _, err := r.Signer(ctx, "team-d", &settings.Config{SignerSecret: "signing-secrets", SignerKMS: "nosuchkms://k"}); err == nil {
		t.Error("unknown KMS provider accepted")
	}
}

func mustKeyID(t *testing.T, s signing.Signer) string {
	t.Helper()
	id, err := s.KeyID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

package lifecycle_test

import (
	"context"
	"testing"

	// sigstore's in-process KMS provider (fakekms://): no real KMS runs
	// here; the controller's main links the four real providers.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/signing"
)

const systemNS = controllertest.SystemNamespace

// For a namespace the first configured of signer.kms.<ns>, the Secret
// <signer.secret>-<ns>, signer.kms, the Secret <signer.secret> signs.
func TestSignerPrecedence(t *testing.T) {
	def, defPub := controllertest.SigningSecret(t, "signing-secrets", "pw")
	teamB, teamBPub := controllertest.SigningSecret(t, "signing-secrets-team-b", "pw")
	r := &lifecycle.Signing{Secrets: controllertest.SecretLister(t, def, teamB), SystemNamespace: systemNS, Shared: lifecycle.NewShared()}
	ctx := context.Background()
	id := func(cfg *settings.Config, ns string) string {
		t.Helper()
		s, err := r.Signer(ctx, ns, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return controllertest.KeyID(t, s)
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

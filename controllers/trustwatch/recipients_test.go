package trustwatch

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

// TestStaleRecipientsAnnounced: an artifact published encrypted to
// prod-eu and prod-us on the real registry and released through TUF with
// the platform policy; the controller (trust.recipients-policy) finds it
// in order, then, once a policy version without prod-us is released,
// announces it as TrustStaleRecipients (naming the artifact, its role and
// what to do) and keeps the list in stepseal-trust.
func TestStaleRecipientsAnnounced(t *testing.T) {
	ctx := context.Background()
	e := newOnlineEnv(t, "trust-recipients", 0)
	host := testregistry.Start(t)
	reg, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	ownerKey, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := signing.NewSigner(ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	platformKeys := map[string]crypto.Signer{}
	for _, n := range []string{"prod-eu", "prod-us"} {
		k, err := signing.Generate(signing.ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		platformKeys[n] = k
		pem, err := signing.MarshalPublicKeyPEM(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n+".pub"), pem, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	signedPolicy := func(version int, demo string) (*policy.Policy, []byte) {
		t.Helper()
		f := filepath.Join(dir, fmt.Sprintf("v%d.yaml", version))
		doc := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: platforms, version: %d}
spec:
  platforms:
  - name: prod-eu
    publicKey: prod-eu.pub
  - name: prod-us
    publicKey: prod-us.pub
  artifacts:
  - match: "*/demo/**"
    platforms: %s
    encrypt: true
`, version, demo)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := policy.Load(f, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := policy.Sign(ctx, p, owner)
		if err != nil {
			t.Fatal(err)
		}
		return p, b
	}

	r := e.repo
	accept := func(p []byte, files map[string][]byte) {
		t.Helper()
		var err error
		if r, err = repo.Open(r.Dir(), repo.OpenOptions{Online: e.online}); err != nil {
			t.Fatal(err)
		}
		if _, err = r.Accept(ctx, p); err != nil {
			t.Fatal(err)
		}
		for path, data := range files {
			if err := r.AddTargetFile(path, data); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Publish(ctx, e.site); err != nil {
			t.Fatal(err)
		}
	}
	const polPath = "policies/platforms.policy"
	p, err := r.Delegate(ctx, repo.Delegation{Name: "build", Paths: []string{polPath, "oci/" + host + "/demo/*"}, Keys: []crypto.PublicKey{owner.Public()}}, e.targets)
	if err != nil {
		t.Fatal(err)
	}
	accept(p, nil)
	releaseFile := func(path string, data []byte) {
		t.Helper()
		sum := sha256.Sum256(data)
		p, err := r.Release(ctx, "build", path, repo.Target{SHA256: hex.EncodeToString(sum[:]), Length: int64(len(data))}, owner)
		if err != nil {
			t.Fatal(err)
		}
		accept(p, map[string][]byte{path: data})
	}
	pol1, b1 := signedPolicy(1, "[prod-eu, prod-us]")
	releaseFile(polPath, b1)

	// Published encrypted to both, released by its tag.
	pub := func(repoTag, content string) (name.Tag, name.Digest, int64) {
		t.Helper()
		tag, err := name.NewTag(host+"/demo/"+repoTag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := oci.BytesArtifact([]byte(content), "application/vnd.example.app", "application/vnd.example.app.layer", "app")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := publish.Publish(ctx, reg, img, tag, publish.Options{Policy: pol1, Key: ownerKey}); err != nil {
			t.Fatal(err)
		}
		d, size, err := reg.Describe(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		return tag, d, size
	}
	releaseImage := func(path string, d name.Digest, size int64) {
		t.Helper()
		p, err := r.Release(ctx, "build", path, repo.Target{SHA256: strings.TrimPrefix(d.DigestStr(), "sha256:"), Length: size}, owner)
		if err != nil {
			t.Fatal(err)
		}
		accept(p, nil)
	}
	tag, d, size := pub("app:v1", "secret app")
	appPath := "oci/" + host + "/demo/app:v1"
	releaseImage(appPath, d, size)
	// A second artifact, released, whose tag someone with registry write
	// access then moves to another artifact.
	_, d2, size2 := pub("web:v1", "secret web")
	webPath := "oci/" + host + "/demo/web:v1"
	releaseImage(webPath, d2, size2)

	cfg := e.config(t)
	cfg.Trust.RecipientsPolicy = "platforms"
	w, err := New(Options{Config: func() *settings.Config { return cfg }, Recorder: e.recorder, Object: e.cm, Kube: e.kube, Namespace: e.ns, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	stale := func() StaleReport {
		t.Helper()
		cm, err := e.kube.CoreV1().ConfigMaps(e.ns).Get(ctx, FloorConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var rep StaleReport
		if err := json.Unmarshal([]byte(cm.Data[StaleKey]), &rep); err != nil {
			t.Fatalf("%s: %v", StaleKey, err)
		}
		return rep
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := stale(); rep.PolicyVersion != 1 || rep.Checked != 2 || len(rep.Stale) != 0 || len(rep.Unchecked) != 0 {
		t.Fatalf("audit with policy v1: %+v", rep)
	}
	pub("web:v1", "other web") // the tag moved, not released

	// prod-us is removed from the demo rule, through TUF; the controller
	// may re-encrypt (publisher key and prod-eu's decryption key).
	ck, err := signing.MarshalPrivateKeyPEM(ownerKey, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dk, err := signing.MarshalPrivateKeyPEM(platformKeys["prod-eu"], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tuf-reencrypt"},
		Data: map[string][]byte{SecretKeyCosignKey: ck, SecretKeyCosignPassword: []byte("pw"), SecretKeyDecryption: dk}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg.Trust.ReencryptSecret = "tuf-reencrypt"
	pol2, b2 := signedPolicy(2, "[prod-eu]")
	releaseFile(polPath, b2)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, e.kube, e.ns, ReasonStaleRecipients, "released artifact "+appPath+" ("+host+"/demo/app@"+d.DigestStr()+", vouched for by TUF role build v")
	waitEvent(t, e.kube, e.ns, ReasonStaleRecipients, "and have role build release the new digest")
	waitEvent(t, e.kube, e.ns, ReasonReencrypted, "re-encrypted "+appPath+" to platforms [prod-eu] of policy \"platforms\" v2: new digest sha256:")
	waitEvent(t, e.kube, e.ns, ReasonReencryptFailed, "not re-encrypting "+webPath+" ("+host+"/demo/web@"+d2.DigestStr()+"): the tag now points to sha256:")
	rep := stale()
	if rep.PolicyVersion != 2 || len(rep.Stale) != 2 || len(rep.Reencrypted) != 1 || rep.Reencrypted[0].Path != appPath || rep.Reencrypted[0].Old != d.String() {
		t.Fatalf("audit with policy v2: %+v", rep)
	}
	// The tag now holds an artifact only prod-eu can decrypt.
	rr, err := publish.Recipients(ctx, reg, tag, pol2)
	if err != nil || rr.Mismatch != nil || strings.Join(rr.Platforms, ",") != "prod-eu" || rr.Digest.String() != rep.Reencrypted[0].New {
		t.Fatalf("after re-encryption: %+v %v", rr, err)
	}

	// The team releases the new digest: app is no longer stale.
	nd, nsize, err := reg.Describe(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	releaseImage(appPath, nd, nsize)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := stale(); len(rep.Stale) != 1 || rep.Stale[0].Path != webPath || len(rep.Reencrypted) != 0 {
		t.Fatalf("audit after the release: %+v", rep)
	}
}

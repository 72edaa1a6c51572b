package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestPublishRunOutput: an example policy whose platforms have no key gets
// throwaway keys, is signed by the owner and read back; the run's output
// is published with its provenance and pulled back as the first platform.
func TestPublishRunOutput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "platform-policy.yaml")
	doc := "apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: example, version: 1}\nspec:\n  platforms:\n  - name: prod-eu\n  - name: prod-us\n    labels: {region: us}\n  artifacts:\n  - {match: \"**\", platforms: [prod-eu, prod-us], encrypt: true}\n"
	if err := os.WriteFile(src, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	owner, err := signing.NewSigner(genKey(t))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	rp, err := PrepareRunPolicy(ctx, src, out, owner)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rp.Made, ",") != "prod-eu,prod-us" || len(rp.PlatformKeys) != 2 || rp.Policy.Version != 1 || len(rp.Policy.SignedBy) != 1 {
		t.Fatalf("run policy %+v", rp)
	}
	if l := rp.Policy.Platforms[1].Labels["region"]; l != "us" {
		t.Fatalf("labels lost: %v", rp.Policy.Platforms[1].Labels)
	}
	for _, n := range rp.Made {
		if _, err := os.Stat(filepath.Join(rp.KeyDir, n+".key")); err != nil {
			t.Fatal(err)
		}
	}

	file := filepath.Join(dir, "app.tar.gz")
	if err := os.WriteFile(file, []byte("the verified output"), 0o644); err != nil {
		t.Fatal(err)
	}
	publisher := genKey(t)
	prov := statement(t, fileHex(t, file), publisher)
	r, err := PublishRunOutput(ctx, RunOutput{Policy: rp.Policy, PlatformKeys: rp.PlatformKeys, Pipeline: "go-build", RunID: "run-1", File: file, Provenance: prov, Publisher: publisher})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Verified || r.PulledBackAs != "prod-eu" || len(r.Recipients) != 2 || !strings.HasSuffix(r.Ref.String(), "/go-build/app:run-1") || r.Digest.String() == "" {
		t.Fatalf("published %+v", r)
	}

	// Provenance signed by another key: refused before publishing.
	_, err = PublishRunOutput(ctx, RunOutput{Policy: rp.Policy, PlatformKeys: rp.PlatformKeys, Pipeline: "go-build", RunID: "run-2", File: file, Provenance: statement(t, fileHex(t, file), genKey(t)), Publisher: publisher})
	if !errors.Is(err, reject.ErrSignature) || !strings.Contains(err.Error(), "provenance.json") {
		t.Fatalf("foreign provenance: %v", err)
	}
	// No private key of the first platform here: published, not pulled back.
	r, err = PublishRunOutput(ctx, RunOutput{Policy: rp.Policy, Pipeline: "go-build", RunID: "run-3", File: file, Publisher: publisher})
	if err != nil || r.Verified || r.PulledBackAs != "" {
		t.Fatalf("without platform keys: %+v %v", r, err)
	}

	// A platform name that would escape the key directory is refused.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(doc, "name: prod-eu\n", "name: ../eu\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareRunPolicy(ctx, bad, filepath.Join(dir, "out-bad"), owner); err == nil || !strings.Contains(err.Error(), "platform without a usable name") {
		t.Fatalf("bad platform name: %v", err)
	}
	// The typed document is strict: a misspelt field is an error, not dropped.
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte(strings.Replace(doc, "encrypt: true", "encrypted: true", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareRunPolicy(ctx, typo, filepath.Join(dir, "out-typo"), owner); !errors.Is(err, policy.ErrInvalid) || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("misspelt field: %v", err)
	}
}

func TestSanitizeRepo(t *testing.T) {
	for in, want := range map[string]string{"App.Tar": "app.tar", "my app/x": "my-app-x", "": "artifact", "ü": "-"} {
		if got := sanitizeRepo(in); got != want {
			t.Errorf("sanitizeRepo(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestErrorsMatchTheSharedVocabulary: this package's refusals are reasons
// of pkg/reject, keep the error of the package that found them, and a
// caller's omission is no verdict.
func TestErrorsMatchTheSharedVocabulary(t *testing.T) {
	rec := recipientsError(fmt.Errorf("%w: r layer 0: extra: x", crypt.ErrRecipients))
	for _, target := range []error{ErrRecipients, reject.ErrPolicy, reject.ErrRefused, crypt.ErrRecipients} {
		if !errors.Is(rec, target) {
			t.Errorf("recipients error does not match %v", target)
		}
	}
	if rec.Error() != "recipients differ from platform policy: r layer 0: extra: x" {
		t.Errorf("recipients error reworded: %q", rec)
	}
	if !errors.Is(ErrArtifactDiffers, reject.ErrMismatch) {
		t.Error("ErrArtifactDiffers is not a mismatch")
	}
	for _, err := range []error{ErrNeedPolicy, ErrNeedDecryptionKey} {
		if reject.Of(err) != nil {
			t.Errorf("%v is a verdict (%v)", err, reject.Of(err))
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", oci.ErrRegistryAuth), reject.ErrUnableToCheck) {
		t.Error("registry credentials refused is a verdict")
	}
}

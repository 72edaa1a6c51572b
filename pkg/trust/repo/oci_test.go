package repo

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
)

// TestPublishOCI: the repository published to the real registry; a client
// whose source is the oci:// reference refreshes, resolves, fetches a hosted
// layout, follows a root rotation (the root walk ends on the registry's
// MANIFEST_UNKNOWN) and a release; republishing pushes nothing; a versioned
// tag is never rewritten; a tag rewritten in the registry by someone with
// write access is refused by the client.
func TestPublishOCI(t *testing.T) {
	ctx := context.Background()
	host := testregistry.Start(t)
	reg, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	layout := releaseLayout(t, f, `{"layout":1}`)
	dst := trust.OCIScheme + host + "/stepseal/tuf"
	pushed, err := f.repo.PublishOCI(ctx, reg, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushed) < 8 || pushed[0][:7] != "target." || pushed[len(pushed)-1] != "timestamp.json" {
		t.Fatalf("pushed %v", pushed)
	}
	c, err := trust.NewClient(ctx, trust.ClientOptions{Source: dst, CacheDir: t.TempDir(), BootstrapRoot: f.repo.RootBytes(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyArtifact(ctx, payAPI, f.digest, f.length); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(ctx, payLayout)
	if err != nil || string(got.Data) != string(layout) {
		t.Fatalf("Fetch over OCI: %v", err)
	}
	if again, err := f.repo.PublishOCI(ctx, reg, dst); err != nil || len(again) != 0 {
		t.Fatalf("republish: %v %v", again, err)
	}

	// Root rotation and a release, published; the client follows.
	newRoot := newKey(t, signing.ED25519)
	oldID, _ := KeyID(f.root.Public())
	p, err := f.repo.RotateRoot(ctx, RootChange{Add: map[string][]crypto.PublicKey{RoleRoot: {newRoot.Public()}}, Remove: map[string][]string{RoleRoot: {oldID}}}, newRoot)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = SignProposal(ctx, p, f.root); err != nil {
		t.Fatal(err)
	}
	f.accept(t, p)
	releaseLayout(t, f, `{"layout":2}`)
	if _, err := f.repo.PublishOCI(ctx, reg, dst); err != nil {
		t.Fatal(err)
	}
	ch, err := c.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Root.To != 2 {
		t.Fatalf("root after rotation over OCI: %+v", ch.Root)
	}
	if got, err := c.Fetch(ctx, payLayout); err != nil || string(got.Data) != `{"layout":2}` {
		t.Fatalf("Fetch after the release: %v", err)
	}

	// Someone with write access to the registry rewrites a role's tag.
	tag, _ := name.NewTag(host+"/stepseal/tuf:3.payments.json", name.Insecure)
	if _, err := reg.PushBytes(ctx, tag, []byte(`{"signed":{},"signatures":[]}`), trust.ArtifactType, trust.LayerType, ""); err != nil {
		t.Fatal(err)
	}
	// The publisher never rewrites it back silently: its copy differs.
	if _, err := f.repo.PublishOCI(ctx, reg, dst); !errors.Is(err, ErrPublished) {
		t.Fatalf("republish over a rewritten tag: %v", err)
	}
	c2, _ := trust.NewClient(ctx, trust.ClientOptions{Source: dst, CacheDir: t.TempDir(), BootstrapRoot: f.repo.RootBytes(), Registry: reg})
	if _, err := c2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c2.Resolve(ctx, payAPI)
	if err == nil || !errors.Is(err, trust.ErrTrust) || !strings.Contains(err.Error(), "payments") {
		t.Fatalf("rewritten role tag: %v", err)
	}
	t.Log(err)
}

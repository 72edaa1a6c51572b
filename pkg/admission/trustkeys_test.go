package admission

import (
	"context"
	"crypto"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

func tufSigner(t *testing.T, k crypto.Signer) signing.Signer {
	t.Helper()
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTrustKeysRevocation is W25 with a real TUF repository: the keys of
// the role that vouches for the repository's tags admit an image it
// signed; once the repository revokes that key and the client refreshes,
// the next Pod with the same digest is denied although its admission was
// cached.
func TestTrustKeysRevocation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.push("trusted/app")
	e.sign(img, e.publisher)
	desc, err := remote.Head(img)
	if err != nil {
		t.Fatal(err)
	}
	other := e.push("trusted/nobody")
	e.sign(other, e.publisher)

	targetsKey := tufSigner(t, genKey(t))
	dir, site := t.TempDir(), t.TempDir()
	r, err := repo.Init(ctx, dir, repo.InitOptions{RootSigners: []signing.Signer{tufSigner(t, genKey(t))}, TargetsSigners: []signing.Signer{targetsKey}, Online: tufSigner(t, genKey(t))})
	if err != nil {
		t.Fatal(err)
	}
	dev, spare := tufSigner(t, e.publisher), genKey(t)
	repoName := img.Context().Name()
	step := func(p []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Accept(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Publish(ctx, site); err != nil {
			t.Fatal(err)
		}
	}
	step(r.Delegate(ctx, repo.Delegation{Parent: "targets", Name: "apps", Paths: []string{"oci/" + img.Context().RegistryStr() + "/trusted/*"}, Keys: []crypto.PublicKey{e.publisher.Public(), spare.Public()}}, targetsKey))
	step(r.Release(ctx, "apps", "oci/"+repoName+":v1", repo.Target{SHA256: strings.TrimPrefix(desc.Digest.String(), "sha256:"), Length: desc.Size}, dev))
	srv := httptest.NewServer(repo.Handler(site))
	defer srv.Close()
	client, err := trust.NewClient(ctx, trust.ClientOptions{Source: srv.URL + "/metadata", CacheDir: t.TempDir(), BootstrapRoot: r.RootBytes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tk := TrustKeys{Client: client}
	d := e.decider(func(c *Config) { c.Keys = tk; c.TrustVersion = tk.Version })
	wantAllowed(t, d.Decide(ctx, pod(img.String()), nil))
	wantDenied(t, d.Decide(ctx, pod(other.String()), nil), ErrNoTrustedKey, `rule "trusted"`, "no role lists a tag of "+other.Context().Name())

	kid, err := repo.KeyID(e.publisher.Public())
	if err != nil {
		t.Fatal(err)
	}
	before := tk.Version()
	step(r.RevokeKey(ctx, "apps", kid, "laptop lost", targetsKey))
	wantAllowed(t, d.Decide(ctx, pod(img.String()), nil)) // cached, same trust version
	if _, err := client.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if tk.Version() == before {
		t.Fatalf("trust version unchanged by the revocation: %s", before)
	}
	dec := d.Decide(ctx, pod(img.String()), nil)
	if dec.Allowed {
		t.Fatal("admitted with a revoked key")
	}
	if !errors.Is(dec.Err(), ErrNoTrustedKey) || !errors.Is(dec.Err(), reject.ErrUnauthorized) || !strings.Contains(dec.Message(), img.String()) || !strings.Contains(dec.Message(), `rule "trusted"`) {
		t.Errorf("message %q", dec.Message())
	}
	t.Logf("after revocation: %s", dec.Message())
}

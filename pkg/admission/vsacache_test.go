package admission

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/vsa"
)

// TestVSAVerdictFollowsTrustVersion (W25 for "vsa" rules): a digest
// admitted by its VSA stays admitted from the cache only while the trust
// version is the same. When the trust source releases a new layout (what
// `layout revoke-key` does when a link key is revoked), the new trust
// version is a new cache key, and the same Decider refuses the VSA of the
// old layout with vsa.ErrPolicyDigest on the next request.
func TestVSAVerdictFollowsTrustVersion(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	img := e.push("builds/cached")
	e.attestVSA(img, e.verifier, verifierID, vsa.Passed, time.Now())

	bound := *e.pol
	bound.Rules = append([]Rule(nil), e.pol.Rules...)
	for i := range bound.Rules {
		if bound.Rules[i].Name == "builds" {
			bound.Rules[i].VSA.Layout = "builds"
		}
	}
	var mu sync.Mutex
	version, digest := "snapshot=1", layoutDigest
	trust := func() (string, string) {
		mu.Lock()
		defer mu.Unlock()
		return version, digest
	}
	d := e.decider(func(c *Config) {
		c.Policy = &bound
		c.Cache = NewCache(CacheOptions{TTL: time.Hour})
		c.TrustVersion = func() string { v, _ := trust(); return v }
		c.VSA = RegistryVSA{Registry: e.c, LayoutDigest: func(context.Context, string) (string, error) { _, l := trust(); return l, nil }}
	})
	wantAllowed(t, d.Decide(ctx, pod(img.String()), nil))

	// The layout is replaced (its link key revoked) and the client
	// refreshes: a new snapshot version.
	mu.Lock()
	version, digest = "snapshot=2", "sha256:"+strings.Repeat("cd", 32)
	mu.Unlock()
	wantDenied(t, d.Decide(ctx, pod(img.String()), nil), vsa.ErrPolicyDigest, img.String(), `rule "builds"`, "the current layout's is sha256:cdcd")

	// Only a new trust version starts a new cache generation: the same
	// version keeps the verdict it has (here, the refusal's 30 s).
	mu.Lock()
	digest = layoutDigest
	mu.Unlock()
	wantDenied(t, d.Decide(ctx, pod(img.String()), nil), vsa.ErrPolicyDigest)
}

package admission

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// TestDecideWebhookCases runs the webhook attack cases against a real
// Distribution registry; each asserts the exact typed refusal and that
// the message names the container, the image and the rule.
func TestDecideWebhookCases(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	signed := e.push("apps/signed")
	e.sign(signed, e.publisher)
	unsigned := e.push("apps/unsigned")

	t.Run("W1 unsigned", func(t *testing.T) {
		dec := e.decider(nil).Decide(ctx, pod(unsigned.String()), nil)
		wantDenied(t, dec, oci.ErrNoSignature, "container c0", unsigned.String(), `rule "apps"`, "has no signature")
		if r := reject.Of(dec.Err()); r != reject.ErrMissing {
			t.Errorf("reason %v", r)
		}
	})
	t.Run("signed allowed", func(t *testing.T) {
		wantAllowed(t, e.decider(nil).Decide(ctx, pod(signed.String()), nil))
	})
	t.Run("signed by another key", func(t *testing.T) {
		other := e.push("apps/other")
		e.sign(other, genKey(t))
		wantDenied(t, e.decider(nil).Decide(ctx, pod(other.String()), nil), oci.ErrSignature, other.String())
	})
	t.Run("W4 by tag", func(t *testing.T) {
		img := e.host + "/apps/signed:v1"
		wantDenied(t, e.decider(nil).Decide(ctx, pod(img), nil), ErrNotByDigest, "container c0", img, "must be referenced by digest")
	})
	t.Run("W5 signature copied from another image", func(t *testing.T) {
		b := e.push("apps/copy")
		src, err := remote.Image(oci.SignatureTag(signed))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(oci.SignatureTag(b), src); err != nil {
			t.Fatal(err)
		}
		wantDenied(t, e.decider(nil).Decide(ctx, pod(b.String()), nil), oci.ErrDigestMismatch, b.String(), signed.DigestStr())
	})
	t.Run("W32 malformed digests", func(t *testing.T) {
		for _, img := range []string{
			e.host + "/apps/x@sha1:" + strings.Repeat("a", 40),
			e.host + "/apps/x@sha256:abc",
			e.host + "/apps/x@sha256:" + strings.Repeat("A", 64),
			"UPPER/x@sha256:" + strings.Repeat("a", 64),
		} {
			dec := e.decider(nil).Decide(ctx, pod(img), nil)
			wantDenied(t, dec, ErrBadReference, img)
			if !errors.Is(dec.Err(), reject.ErrMalformed) {
				t.Errorf("%s: %v is not malformed", img, dec.Err())
			}
		}
	})
	t.Run("W16 W24 no rule, no request", func(t *testing.T) {
		stub := newCountingProxy(t, "")
		hex := strings.Repeat("ab", 32)
		for _, img := range []string{
			stub.host + "/mirror/x@sha256:" + hex,
			"169.254.169.254/x@sha256:" + hex,
			"docker.io/library/busybox@sha256:" + hex,
		} {
			wantDenied(t, e.decider(nil).Decide(ctx, pod(img), nil), ErrNoRule, img, "was not contacted")
		}
		if n := stub.n.Load(); n != 0 {
			t.Errorf("the stub registry received %d requests", n)
		}
	})
	t.Run("W17 init container, ephemeral container, image volume", func(t *testing.T) {
		p := pod(signed.String())
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: unsigned.String()}}
		wantDenied(t, e.decider(nil).Decide(ctx, p, nil), oci.ErrNoSignature, "init container init", unsigned.String())
		p = pod(signed.String())
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: unsigned.String()}}}
		wantDenied(t, e.decider(nil).Decide(ctx, p, pod(signed.String())), oci.ErrNoSignature, "ephemeral container debugger", unsigned.String())
		p = pod(signed.String())
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: unsigned.String()}}}}
		wantDenied(t, e.decider(nil).Decide(ctx, p, nil), oci.ErrNoSignature, "volume data", unsigned.String())
	})
	t.Run("W18 update: nop sidecar stop allowed, unsigned image denied", func(t *testing.T) {
		old := pod(signed.String(), signed.String())
		stop := pod(signed.String(), e.nop.String())
		wantAllowed(t, e.decider(nil).Decide(ctx, stop, old))
		swap := pod(signed.String(), unsigned.String())
		wantDenied(t, e.decider(nil).Decide(ctx, swap, old), oci.ErrNoSignature, "container c1", unsigned.String())
		pinnedElsewhere := pod(signed.String(), e.push("tekton/other").String())
		wantDenied(t, e.decider(nil).Decide(ctx, pinnedElsewhere, old), ErrDigestNotAllowed, `rule "tekton-infra"`)
	})
	t.Run("W27 warn mode", func(t *testing.T) {
		w := e.push("warned/x")
		dec := e.decider(nil).Decide(ctx, pod(w.String()), nil)
		wantAllowed(t, dec)
		if len(dec.Warnings) != 1 || !strings.Contains(dec.Warnings[0], w.String()) || !strings.Contains(dec.Warnings[0], "has no signature") {
			t.Errorf("warnings %q", dec.Warnings)
		}
	})
	t.Run("W6 W7 W8 W9 W10 W11 VSA", func(t *testing.T) {
		ok := e.push("builds/ok")
		e.attestVSA(ok, e.verifier, verifierID, vsa.Passed, time.Now())
		wantAllowed(t, e.decider(nil).Decide(ctx, pod(ok.String()), nil))
		failed := e.push("builds/failed")
		e.attestVSA(failed, e.verifier, verifierID, vsa.Failed, time.Now())
		wantDenied(t, e.decider(nil).Decide(ctx, pod(failed.String()), nil), vsa.ErrFailed, "FAILED", `rule "builds"`)
		forged := e.push("builds/forged")
		e.attestVSA(forged, e.publisher, verifierID, vsa.Passed, time.Now())
		wantDenied(t, e.decider(nil).Decide(ctx, pod(forged.String()), nil), oci.ErrSignature, forged.DigestStr())
		otherVerifier := e.push("builds/other-verifier")
		e.attestVSA(otherVerifier, e.verifier, "https://stepseal.dev/verifier/other", vsa.Passed, time.Now())
		wantDenied(t, e.decider(nil).Decide(ctx, pod(otherVerifier.String()), nil), vsa.ErrVerifier, "verifier/other")
		old := e.push("builds/old")
		e.attestVSA(old, e.verifier, verifierID, vsa.Passed, time.Now().Add(-2*time.Hour))
		wantDenied(t, e.decider(nil).Decide(ctx, pod(old.String()), nil), vsa.ErrTooOld)
		future := e.push("builds/future")
		e.attestVSA(future, e.verifier, verifierID, vsa.Passed, time.Now().Add(time.Hour))
		wantDenied(t, e.decider(nil).Decide(ctx, pod(future.String()), nil), vsa.ErrFuture)
		// W6: a PASSED VSA about another image, attached to this one.
		// (pkg/oci refuses to attach it, so the attacker copies ok's .att tag.)
		another := e.push("builds/another")
		att, err := remote.Image(oci.AttestationTag(ok))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(oci.AttestationTag(another), att); err != nil {
			t.Fatal(err)
		}
		wantDenied(t, e.decider(nil).Decide(ctx, pod(another.String()), nil), oci.ErrDigestMismatch, ok.DigestStr()[7:])
		// W9: the same image copied to another repository, with its VSA.
		copied := e.write(e.host, "builds/copied", mustImage(t, e, ok))
		e.attestVSAFor(copied, ok, e.verifier, verifierID, vsa.Passed, time.Now(), layoutDigest)
		wantDenied(t, e.decider(nil).Decide(ctx, pod(copied.String()), nil), vsa.ErrResourceURI, "builds/copied")
		// W10: a rule bound to the layout's current digest refuses a VSA of
		// an older layout, and cannot check without a trust source.
		bound := *e.pol
		bound.Rules = append([]Rule(nil), e.pol.Rules...)
		for i := range bound.Rules {
			if bound.Rules[i].Name == "builds" {
				bound.Rules[i].VSA.Layout = "builds"
			}
		}
		current := func(digest string) func(*Config) {
			return func(c *Config) {
				c.Policy = &bound
				c.VSA = RegistryVSA{Registry: e.c, LayoutDigest: func(_ context.Context, name string) (string, error) { return digest, nil }}
			}
		}
		wantAllowed(t, e.decider(current(layoutDigest)).Decide(ctx, pod(ok.String()), nil))
		wantDenied(t, e.decider(current("sha256:"+strings.Repeat("cd", 32))).Decide(ctx, pod(ok.String()), nil), vsa.ErrPolicyDigest)
		unbound := e.decider(func(c *Config) { c.Policy = &bound }).Decide(ctx, pod(ok.String()), nil)
		wantDenied(t, unbound, reject.ErrUnsupported, "no trust source gives its digest")
		none := e.decider(func(c *Config) { c.VSA = nil }).Decide(ctx, pod(ok.String()), nil)
		wantDenied(t, none, reject.ErrUnsupported, "no VSA checker")
	})

	enc := e.encrypted("demo/app", e.ppol)
	t.Run("W34 encrypted image needs imagePullPolicy Always", func(t *testing.T) {
		p := pod(enc.String())
		wantDenied(t, e.decider(nil).Decide(ctx, p, nil), ErrPullPolicy, "container c0", `rule "demo"`)
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
		dec := e.decider(nil).Decide(ctx, p, nil)
		wantAllowed(t, dec)
		if !dec.Images[0].Encrypted {
			t.Error("not reported as encrypted")
		}
	})
	t.Run("W13 platform not in the rule", func(t *testing.T) {
		p := pod(enc.String())
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
		dec := e.decider(func(c *Config) { c.Platform = "us" }).Decide(ctx, p, nil)
		wantDenied(t, dec, ErrPlatform, `platform "us"`, `rule "demo"`)
	})
	t.Run("W14 extra recipient", func(t *testing.T) {
		extra := e.encrypted("demo/extra", e.platformPolicy("[eu, us, other]"))
		p := pod(extra.String())
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
		wantDenied(t, e.decider(nil).Decide(ctx, p, nil), crypt.ErrRecipients, extra.String())
	})
	t.Run("W15 plaintext where the policy says encrypt", func(t *testing.T) {
		plain := e.push("demo/plain")
		e.sign(plain, e.publisher)
		p := pod(plain.String())
		wantDenied(t, e.decider(nil).Decide(ctx, p, nil), crypt.ErrNotEncrypted, plain.String())
	})

	t.Run("W25 trust version invalidates the cache", func(t *testing.T) {
		img := e.push("trusted/app")
		e.sign(img, e.publisher)
		ks := &keySource{}
		ks.set(1, e.publisher.Public())
		d := e.decider(func(c *Config) {
			c.Keys = ks
			c.TrustVersion = ks.Version
			c.Cache = NewCache(CacheOptions{TTL: time.Hour})
		})
		wantAllowed(t, d.Decide(ctx, pod(img.String()), nil))
		ks.set(2, genKey(t).Public()) // the publisher's key revoked
		wantDenied(t, d.Decide(ctx, pod(img.String()), nil), oci.ErrSignature, `rule "trusted"`)
	})
	t.Run("W20 registry that never answers", func(t *testing.T) {
		silent := silentListener(t)
		img := silent + "/apps/x@sha256:" + strings.Repeat("cd", 32)
		start := time.Now()
		dec := e.decider(func(c *Config) { c.Deadline = time.Second }).Decide(ctx, pod(img), nil)
		wantDenied(t, dec, ErrDeadline, "container c0", img, "stepseal could not check it within 1s")
		if !errors.Is(dec.Err(), reject.ErrUnableToCheck) || errors.Is(dec.Err(), reject.ErrRefused) {
			t.Errorf("a timeout is 'could not check', not a refusal: %v", dec.Err())
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %s", el)
		}
	})
}

// TestDecideOneCheckPerImage: W19 (100 containers of one image in a Pod)
// and W26 (200 concurrent decisions of one new digest) each cost the
// registry one set of fetches, counted at a reverse proxy in front of the
// real registry.
func TestDecideOneCheckPerImage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	proxy := newCountingProxy(t, e.host)
	at := func(d name.Digest) string {
		return proxy.host + "/" + d.Context().RepositoryStr() + "@" + d.DigestStr()
	}

	one := e.push("apps/one")
	e.sign(one, e.publisher)
	wantAllowed(t, e.decider(nil).Decide(ctx, pod(at(one)), nil))
	base := proxy.n.Load()
	if base == 0 {
		t.Fatal("the proxy saw no request")
	}

	hundred := e.push("apps/hundred")
	e.sign(hundred, e.publisher)
	imgs := make([]string, 100)
	for i := range imgs {
		imgs[i] = at(hundred)
	}
	proxy.n.Store(0)
	dec := e.decider(nil).Decide(ctx, pod(imgs...), nil)
	wantAllowed(t, dec)
	if n := proxy.n.Load(); n != base {
		t.Errorf("W19: 100 containers of one image cost %d requests, one costs %d", n, base)
	}

	burst := e.push("apps/burst")
	e.sign(burst, e.publisher)
	d := e.decider(nil)
	proxy.n.Store(0)
	var wg sync.WaitGroup
	decs := make([]Decision, 200)
	for i := range decs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			decs[i] = d.Decide(ctx, pod(at(burst)), nil)
		}()
	}
	wg.Wait()
	for i, dec := range decs {
		if !dec.Allowed {
			t.Fatalf("decision %d: %s", i, dec.Message())
		}
	}
	if n := proxy.n.Load(); n != base {
		t.Errorf("W26: 200 concurrent decisions cost %d requests, one costs %d", n, base)
	}
	// The refusal is cached too (negative TTL): a second denial asks nothing.
	bad := e.push("apps/bad")
	proxy.n.Store(0)
	wantDenied(t, d.Decide(ctx, pod(at(bad)), nil), oci.ErrNoSignature)
	n := proxy.n.Load()
	wantDenied(t, d.Decide(ctx, pod(at(bad)), nil), oci.ErrNoSignature)
	if proxy.n.Load() != n {
		t.Error("a refusal was not cached")
	}
}

func TestCacheLRUAndTTL(t *testing.T) {
	now := time.Unix(0, 0)
	c := NewCache(CacheOptions{Size: 2, TTL: time.Minute, NegativeTTL: time.Second, Now: func() time.Time { return now }})
	calls := 0
	ok := func(context.Context) (verdict, error) { calls++; return verdict{}, nil }
	refuse := func(context.Context) (verdict, error) { calls++; return verdict{}, oci.ErrNoSignature }
	down := func(context.Context) (verdict, error) { calls++; return verdict{}, oci.ErrUnreachable }
	ctx := context.Background()
	k := func(s string) cacheKey { return cacheKey{digest: s} }
	_, _ = c.do(ctx, k("a"), ok)
	_, _ = c.do(ctx, k("a"), ok)
	if calls != 1 {
		t.Fatalf("calls %d", calls)
	}
	_, _ = c.do(ctx, k("b"), refuse)
	_, _ = c.do(ctx, k("c"), ok) // evicts a (size 2)
	if c.Len() != 2 {
		t.Errorf("len %d", c.Len())
	}
	calls = 0
	_, _ = c.do(ctx, k("a"), ok)
	if calls != 1 {
		t.Error("a was not evicted")
	}
	now = now.Add(2 * time.Second) // b's negative TTL is over
	calls = 0
	_, _ = c.do(ctx, k("b"), refuse)
	_, _ = c.do(ctx, k("d"), down)
	_, _ = c.do(ctx, k("d"), down)
	if calls != 3 {
		t.Errorf("calls %d: a refusal past its TTL or a failure to check was kept", calls)
	}
}

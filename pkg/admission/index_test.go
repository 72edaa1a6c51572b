package admission

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/reject"
)

// child is one platform of a test index.
type child struct {
	arch string
	pol  *policy.Policy // encrypt to this platform policy; nil: plaintext
}

// writeIndex pushes an index of children (each a random image, encrypted
// per its policy) to repo, signs the index digest as cosign does (not the
// children) and returns it with the children's digests.
func writeIndex(t *testing.T, e *env, repo string, children ...child) (name.Digest, []name.Digest) {
	t.Helper()
	ctx := context.Background()
	var adds []mutate.IndexAddendum
	tag, _ := name.NewTag(e.host+"/"+repo+":v1", name.Insecure)
	var digests []name.Digest
	for _, c := range children {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		if c.pol != nil {
			if img, err = crypt.EncryptFor(ctx, c.pol, e.host+"/"+repo, img); err != nil {
				t.Fatal(err)
			}
		}
		h, _ := img.Digest()
		digests = append(digests, tag.Context().Digest(h.String()))
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: c.arch}}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	h, _ := idx.Digest()
	d := tag.Context().Digest(h.String())
	e.sign(d, e.publisher)
	return d, digests
}

func always(images ...string) *corev1.Pod {
	p := pod(images...)
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].ImagePullPolicy = corev1.PullAlways
	}
	return p
}

// TestDecideIndexEveryChild (W28): a signed multi-platform index is
// checked child by child, not only the linux/amd64 child ggcr would pick.
// One plaintext child where the platform policy requires encryption, or
// one child with an extra JWE recipient, refuses the index naming that
// child's platform and digest; a child digest named directly is decided
// as the image it is (its own signature); nested indexes are ErrIndex and
// an index with too many children oci.ErrTooMany.
func TestDecideIndexEveryChild(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	extra := e.platformPolicy("[eu, us, other]") // one recipient more than the policy's

	t.Run("every child encrypted to the policy: admitted, and needs Always", func(t *testing.T) {
		idx, _ := writeIndex(t, e, "demo/good", child{"amd64", e.ppol}, child{"arm64", e.ppol}, child{"s390x", e.ppol})
		dec := e.decider(nil).Decide(ctx, always(idx.String()), nil)
		wantAllowed(t, dec)
		if !dec.Images[0].Encrypted {
			t.Errorf("an index of encrypted children is encrypted: %+v", dec.Images[0])
		}
		wantDenied(t, e.decider(nil).Decide(ctx, pod(idx.String()), nil), ErrPullPolicy, idx.String())
	})
	t.Run("one plaintext child", func(t *testing.T) {
		idx, ch := writeIndex(t, e, "demo/plainchild", child{"amd64", e.ppol}, child{"arm64", nil}, child{"s390x", e.ppol})
		dec := e.decider(nil).Decide(ctx, always(idx.String()), nil)
		wantDenied(t, dec, crypt.ErrNotEncrypted, idx.String(), `rule "demo"`, "index child "+ch[1].DigestStr()+" (platform linux/arm64)")
		if reject.Of(dec.Err()) == nil || !errors.Is(dec.Err(), reject.ErrRefused) {
			t.Errorf("not a typed refusal: %v", dec.Err())
		}
	})
	t.Run("one child with an extra recipient", func(t *testing.T) {
		idx, ch := writeIndex(t, e, "demo/extra", child{"amd64", e.ppol}, child{"arm64", e.ppol}, child{"s390x", extra})
		wantDenied(t, e.decider(nil).Decide(ctx, always(idx.String()), nil), crypt.ErrRecipients, idx.String(), "index child "+ch[2].DigestStr()+" (platform linux/s390x)")
	})
	t.Run("a child named directly is that image", func(t *testing.T) {
		_, ch := writeIndex(t, e, "demo/direct", child{"amd64", e.ppol}, child{"arm64", nil})
		// cosign signs the index digest only: a child has no signature of its own.
		wantDenied(t, e.decider(nil).Decide(ctx, always(ch[0].String()), nil), oci.ErrNoSignature, ch[0].String())
		e.sign(ch[0], e.publisher)
		e.sign(ch[1], e.publisher)
		wantAllowed(t, e.decider(nil).Decide(ctx, always(ch[0].String()), nil))
		dec := e.decider(nil).Decide(ctx, always(ch[1].String()), nil)
		wantDenied(t, dec, crypt.ErrNotEncrypted, ch[1].String())
	})
	t.Run("plaintext index where encryption is not required", func(t *testing.T) {
		idx, _ := writeIndex(t, e, "apps/multi", child{"amd64", nil}, child{"arm64", nil})
		dec := e.decider(nil).Decide(ctx, pod(idx.String()), nil)
		wantAllowed(t, dec)
		if dec.Images[0].Encrypted {
			t.Errorf("plaintext index reported encrypted")
		}
	})
	t.Run("nested index", func(t *testing.T) {
		inner, _ := writeIndex(t, e, "demo/inner", child{"amd64", e.ppol})
		innerIdx, err := remote.Index(inner)
		if err != nil {
			t.Fatal(err)
		}
		outer := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: innerIdx, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
		tag, _ := name.NewTag(e.host+"/demo/outer:v1", name.Insecure)
		if err := remote.WriteIndex(tag, outer); err != nil {
			t.Fatal(err)
		}
		h, _ := outer.Digest()
		d := tag.Context().Digest(h.String())
		e.sign(d, e.publisher)
		wantDenied(t, e.decider(nil).Decide(ctx, always(d.String()), nil), ErrIndex, "index child "+inner.DigestStr(), "not an image manifest")
	})
	t.Run("too many children", func(t *testing.T) {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		var adds []mutate.IndexAddendum
		for i := range MaxIndexChildren + 1 {
			adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: fmt.Sprint("arch", i)}}})
		}
		idx := mutate.AppendManifests(empty.Index, adds...)
		tag, _ := name.NewTag(e.host+"/apps/wide:v1", name.Insecure)
		if err := remote.WriteIndex(tag, idx); err != nil {
			t.Fatal(err)
		}
		h, _ := idx.Digest()
		d := tag.Context().Digest(h.String())
		e.sign(d, e.publisher)
		wantDenied(t, e.decider(nil).Decide(ctx, pod(d.String()), nil), oci.ErrTooMany, d.String(), `rule "apps"`, fmt.Sprintf("has %d children", MaxIndexChildren+1))
	})
}

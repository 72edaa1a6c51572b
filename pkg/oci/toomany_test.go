package oci

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestTooManySignaturesRefused: an image whose cosign signature tag holds
// more layers than one verification reads is refused with ErrTooMany
// (a policy refusal), not read without bound; at the bound it is read.
func TestTooManySignaturesRefused(t *testing.T) {
	ctx := context.Background()
	tg := distribution(t)
	key := genKey(t, signing.ECDSA)
	for _, n := range []int{MaxCandidates, MaxCandidates + 1} {
		d := pushRandom(t, tg.host, "demo/flood", fmt.Sprint(n))
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		for i := range n {
			var err error
			img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(fmt.Appendf(nil, "junk %d", i), MediaTypeSimpleSigning),
				Annotations: map[string]string{AnnotationSignature: "AAAA"}, MediaType: MediaTypeSimpleSigning})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := remote.Write(SignatureTag(d), img); err != nil {
			t.Fatal(err)
		}
		_, err := VerifySignatures(ctx, d, key.Public(), testOpts...)
		switch {
		case n > MaxCandidates && (!errors.Is(err, ErrTooMany) || reject.Of(err) != reject.ErrPolicy || !strings.Contains(err.Error(), d.String())):
			t.Fatalf("%d signatures: %v, want ErrTooMany naming the image", n, err)
		case n == MaxCandidates && !errors.Is(err, ErrSignature):
			t.Fatalf("%d signatures (none by the key): %v, want ErrSignature", n, err)
		}
	}
}

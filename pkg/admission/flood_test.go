package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/vsa"
)

// flood is how many attestations the attacker attaches.
const flood = 10_000

// TestDecideAttestationFlood (W21): an image carrying 10 000 attestations,
// in cosign's .att image or as 10 000 OCI referrers (the tag-scheme index
// Distribution serves), is refused through the Decider with oci.ErrTooMany
// (a policy refusal naming the image and the rule) after reading at most
// oci.MaxCandidates attestation layers or none of the referrers. Memory is
// measured as the bytes one decision allocates (runtime.MemStats), and
// bounded (it was 1.4 GiB for the .att flood before pkg/oci counted the
// layers before reading any and read blobs by digest); time is only
// logged, and the deadline is a minute so a loaded machine does not turn
// the refusal into ErrDeadline.
func TestDecideAttestationFlood(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	layer := static.NewLayer([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`), oci.MediaTypeDSSE)

	// cosign's .att: one image of 10 000 layers (one blob, distinct
	// annotations, so none is de-duplicated). The manifests are put as
	// bytes: ggcr's writer would check each of 10 000 layers or children.
	att := e.push("builds/flood-att")
	base, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layer, MediaType: oci.MediaTypeDSSE})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(oci.AttestationTag(att), base); err != nil {
		t.Fatal(err)
	}
	m, err := base.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	one := m.Layers[0]
	m.Layers = make([]v1.Descriptor, 0, flood)
	for i := range flood {
		d := one
		d.Annotations = map[string]string{oci.AnnotationPredicate: vsa.PredicateType, oci.AnnotationSignature: fmt.Sprint(i)}
		m.Layers = append(m.Layers, d)
	}
	putRaw(t, oci.AttestationTag(att), m, types.OCIManifestSchema1)

	// OCI 1.1 referrers through the tag scheme: an index of 10 000
	// attestation descriptors under sha256-<hex>.
	ref := e.push("builds/flood-ref")
	target, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ttag := ref.Context().Tag("target")
	if err := remote.Write(ttag, target); err != nil {
		t.Fatal(err)
	}
	td, err := partial.Descriptor(target)
	if err != nil {
		t.Fatal(err)
	}
	im := &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for i := range flood {
		d := *td
		d.ArtifactType = oci.ArtifactTypeAttestation
		d.Annotations = map[string]string{"n": fmt.Sprint(i)}
		im.Manifests = append(im.Manifests, d)
	}
	putRaw(t, ref.Context().Tag(fmt.Sprintf("sha256-%s", ref.DigestStr()[len("sha256:"):])), im, types.OCIImageIndex)

	for _, c := range []struct {
		image name.Digest
		want  string
	}{
		{att, fmt.Sprintf("more than %d signatures or attestations", oci.MaxCandidates)},
		{ref, fmt.Sprintf("%d referrers of %s, at most %d", flood, ref, oci.MaxReferrers)},
	} {
		d := e.decider(func(c *Config) { c.Deadline = time.Minute })
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		dec := d.Decide(ctx, pod(c.image.String()), nil)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		wantDenied(t, dec, oci.ErrTooMany, "container c0", c.image.String(), `rule "builds"`, c.want)
		if reject.Of(dec.Err()) != reject.ErrPolicy {
			t.Errorf("%s: reason %v, want %v", c.image, reject.Of(dec.Err()), reject.ErrPolicy)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: one decision allocated %.1f MiB in %v", c.image.Context().RepositoryStr(), float64(alloc)/(1<<20), took)
		if alloc > 96<<20 {
			t.Errorf("%s: one decision allocated %d MiB, more than 96", c.image, alloc>>20)
		}
	}
}

// rawManifest is a manifest put as its bytes.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

func putRaw(t *testing.T, tag name.Tag, m any, mt types.MediaType) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: a manifest of %d KiB", tag, len(b)>>10)
	if err := remote.Put(tag, rawManifest{b, mt}); err != nil {
		t.Fatal(err)
	}
}

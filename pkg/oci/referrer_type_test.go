package oci

import (
	"context"
	"encoding/json"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/pkg/signing"
)

// TestAttestationReferrerType: attestation referrers carry the in-toto
// artifactType cosign and GUAC look for, a referrers listing filtered by that
// type finds them, and a referrer of the DSSE type older stepseal wrote is
// still read.
func TestAttestationReferrerType(t *testing.T) {
	ctx := context.Background()
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			key := genKey(t, signing.ECDSA)
			d := pushRandom(t, tg.host, "demo/reftype", "v1")
			if err := Attest(ctx, d, envelopeFor(t, d, slsaV1, key), slsaV1, testOpts...); err != nil {
				t.Fatal(err)
			}
			// ggcr's in-process registry lists a referrer's config media type
			// as its artifactType; Distribution has go-containerregistry's
			// fallback tag, which ggcr filters on the client.
			if tg.name != "ggcr" {
				idx, err := remote.Referrers(d, remote.WithFilter("artifactType", "application/vnd.in-toto+json"))
				if err != nil {
					t.Fatal(err)
				}
				im, err := idx.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != "application/vnd.in-toto+json" {
					t.Fatalf("filtered listing: %+v", im.Manifests)
				}
			}

			// A referrer of the older type, alone (no .att tag).
			old := pushRandom(t, tg.host, "demo/reftype", "v0")
			c, err := New(testOpts...)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(envelopeFor(t, old, slsaV1, key))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.attach(ctx, old, AttestationTag(old), artifactTypeAttestationV0, raw, MediaTypeDSSE, map[string]string{AnnotationPredicate: slsaV1}, func(v1.Descriptor) bool { return true }); err != nil {
				t.Fatal(err)
			}
			deleteTag(t, AttestationTag(old))
			atts, err := VerifyAttestations(ctx, old, key.Public(), nil, testOpts...)
			if err != nil || len(atts) != 1 {
				t.Fatalf("older referrer type: %+v, %v", atts, err)
			}
		})
	}
}

package oci

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stepseal/stepseal/pkg/signing"
)

const slsaV1 = "https://slsa.dev/provenance/v1"

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	for _, tg := range targets(t) {
		for _, kt := range []signing.KeyType{signing.ED25519, signing.ECDSA, signing.RSA} {
			t.Run(tg.name+"/"+string(kt), func(t *testing.T) {
				repo := "demo/" + string(kt)
				d := pushRandom(t, tg.host, repo, "v1")
				key, other := genKey(t, kt), genKey(t, signing.ECDSA)

				if _, err := VerifySignatures(ctx, d, key.Public(), testOpts...); !errors.Is(err, ErrNoSignature) {
					t.Fatalf("unsigned image: %v, want ErrNoSignature", err)
				}
				if err := Sign(ctx, d, key, testOpts...); err != nil {
					t.Fatal(err)
				}
				// Signing again with the same key is idempotent; another key appends.
				if err := Sign(ctx, d, key, testOpts...); err != nil {
					t.Fatal(err)
				}
				if err := Sign(ctx, d, other, testOpts...); err != nil {
					t.Fatal(err)
				}
				sigs, err := VerifySignatures(ctx, d, key.Public(), testOpts...)
				if err != nil {
					t.Fatal(err)
				}
				if len(sigs) != 1 || !strings.HasSuffix(sigs[0].Source, ".sig") {
					t.Fatalf("signatures %+v, want one, from the .sig tag", sigs)
				}
				if m := manifestOf(t, SignatureTag(d)); len(m.Layers) != 2 {
					t.Fatalf(".sig image has %d layers, want 2 (one per key)", len(m.Layers))
				}
				if _, err := VerifySignatures(ctx, d, other.Public(), testOpts...); err != nil {
					t.Fatalf("second key: %v", err)
				}
				stranger := genKey(t, kt)
				_, err = VerifySignatures(ctx, d, stranger.Public(), testOpts...)
				id, _ := signing.KeyID(stranger.Public())
				if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), id[:8]) || !strings.Contains(err.Error(), d.DigestStr()) {
					t.Fatalf("unknown key: %v, want ErrSignature naming key %s and the digest", err, id[:8])
				}
				checkReferrers(t, tg, d, ArtifactTypeSignature)
				// Without cosign's tag the referrer alone carries the signature.
				deleteTag(t, SignatureTag(d))
				sigs, err = VerifySignatures(ctx, d, key.Public(), testOpts...)
				if err != nil || !strings.Contains(sigs[0].Source, "@sha256:") {
					t.Fatalf("signature from referrers only: %+v, %v", sigs, err)
				}

				// Attestations.
				if _, err := VerifyAttestations(ctx, d, key.Public(), nil, testOpts...); !errors.Is(err, ErrNoSignature) {
					t.Fatalf("no attestation yet: %v", err)
				}
				if err := Attest(ctx, d, envelopeFor(t, d, slsaV1, key), slsaV1, testOpts...); err != nil {
					t.Fatal(err)
				}
				atts, err := VerifyAttestations(ctx, d, key.Public(), []AttestationOption{WithPredicateType(slsaV1)}, testOpts...)
				if err != nil {
					t.Fatal(err)
				}
				if len(atts) != 1 || atts[0].PredicateType != slsaV1 {
					t.Fatalf("attestations %+v, want one of type %s", atts, slsaV1)
				}
				if _, err := VerifyAttestations(ctx, d, key.Public(), []AttestationOption{WithPredicateType("https://example.com/other")}, testOpts...); !errors.Is(err, ErrNoSignature) {
					t.Fatalf("other predicate type: %v, want ErrNoSignature", err)
				}
				if _, err := VerifyAttestations(ctx, d, stranger.Public(), nil, testOpts...); !errors.Is(err, ErrSignature) {
					t.Fatalf("attestation with unknown key: %v, want ErrSignature", err)
				}
				checkReferrers(t, tg, d, ArtifactTypeAttestation)
				deleteTag(t, AttestationTag(d))
				atts, err = VerifyAttestations(ctx, d, key.Public(), nil, testOpts...)
				if err != nil || len(atts) != 1 || !strings.Contains(atts[0].Source, "@sha256:") {
					t.Fatalf("attestation from referrers only: %+v, %v", atts, err)
				}
			})
		}
	}
}

// checkReferrers checks that d's referrers of the artifact type are listed
// through the referrers API where the registry has it, and through the
// sha256-<hex> fallback tag where it does not.
func checkReferrers(t *testing.T, tg target, d name.Digest, artifactType string) {
	t.Helper()
	resp, err := http.Get("http://" + tg.host + "/v2/" + d.RepositoryStr() + "/referrers/" + d.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if api := resp.StatusCode == http.StatusOK; api != tg.referrersAPI {
		t.Fatalf("referrers API answered %s on %s", resp.Status, tg.name)
	}
	fallback := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1))
	_, err = remote.Head(fallback)
	if tg.referrersAPI && err == nil {
		t.Fatalf("%s: fallback tag %s written although the registry has the referrers API", tg.name, fallback)
	}
	if !tg.referrersAPI && err != nil {
		t.Fatalf("%s: no fallback tag %s: %v", tg.name, fallback, err)
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	found := false
	for _, desc := range im.Manifests {
		m := manifestOf(t, d.Context().Digest(desc.Digest.String()))
		found = found || (m.ArtifactType == artifactType && m.Subject != nil && m.Subject.Digest.String() == d.DigestStr())
	}
	if !found {
		t.Fatalf("%s: no referrer of type %s listed for %s", tg.name, artifactType, d)
	}
}

func TestSignatureCopiedFromAnotherImageRejected(t *testing.T) {
	ctx := context.Background()
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			key := genKey(t, signing.ECDSA)
			a := pushRandom(t, tg.host, "demo/copy", "a")
			b := pushRandom(t, tg.host, "demo/copy", "b")
			if err := Sign(ctx, a, key, testOpts...); err != nil {
				t.Fatal(err)
			}
			if err := Attest(ctx, a, envelopeFor(t, a, slsaV1, key), slsaV1, testOpts...); err != nil {
				t.Fatal(err)
			}
			// The attacker copies A's signature and attestation images to B's tags.
			for _, pair := range [][2]name.Tag{{SignatureTag(a), SignatureTag(b)}, {AttestationTag(a), AttestationTag(b)}} {
				img, err := Pull(ctx, pair[0], testOpts...)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Push(ctx, img, pair[1], testOpts...); err != nil {
					t.Fatal(err)
				}
			}
			_, err := VerifySignatures(ctx, b, key.Public(), testOpts...)
			if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), a.DigestStr()) || !strings.Contains(err.Error(), b.DigestStr()) {
				t.Fatalf("copied signature: %v, want ErrDigestMismatch naming both digests", err)
			}
			if _, err := VerifyAttestations(ctx, b, key.Public(), nil, testOpts...); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("copied attestation: %v, want ErrDigestMismatch", err)
			}
			// Attesting a statement about A onto B is refused up front.
			if err := Attest(ctx, b, envelopeFor(t, a, slsaV1, key), slsaV1, testOpts...); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("Attest of a statement about another digest: %v", err)
			}
			if _, err := VerifySignatures(ctx, a, key.Public(), testOpts...); err != nil {
				t.Fatalf("original still verifies: %v", err)
			}
		})
	}
}

func TestMovedTagCaughtByDigest(t *testing.T) {
	ctx := context.Background()
	tg := distribution(t)
	key := genKey(t, signing.ED25519)
	tag := mustRef(t, tg.host+"/demo/moved:release")
	pushRandom(t, tg.host, "demo/moved", "release")
	signed, err := Resolve(ctx, tag, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := Sign(ctx, signed, key, testOpts...); err != nil {
		t.Fatal(err)
	}
	// The attacker moves the tag to an image of their own.
	pushRandom(t, tg.host, "demo/moved", "release")
	moved, err := Resolve(ctx, tag, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if moved == signed {
		t.Fatal("tag did not move")
	}
	if _, err := VerifySignatures(ctx, signed, key.Public(), testOpts...); err != nil {
		t.Fatalf("original digest: %v", err)
	}
	if _, err := VerifySignatures(ctx, moved, key.Public(), testOpts...); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("moved tag's digest: %v, want ErrNoSignature", err)
	}
}

// deleteTag deletes the manifest a tag points to (Distribution deletes by digest only).
func deleteTag(t *testing.T, tag name.Tag) {
	t.Helper()
	desc, err := remote.Head(tag)
	if err != nil {
		t.Fatal(err)
	}
	// ggcr's registry deletes tags; Distribution only digests (which drops their tags).
	_ = remote.Delete(tag)
	if err := remote.Delete(tag.Context().Digest(desc.Digest.String())); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(tag); err == nil {
		t.Fatalf("%s still there after delete", tag)
	}
}

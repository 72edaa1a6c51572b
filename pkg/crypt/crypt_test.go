package crypt

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containers/ocicrypt"
	"github.com/containers/ocicrypt/config"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stepseal/stepseal/pkg/policy"
)

var ctx = context.Background()

const ref = "registry.test:5000/demo/app:v1"

func TestRoundTripPerKeyType(t *testing.T) {
	other := platformSpec{name: "other", key: testKey(t, p256, "other")}
	for _, kind := range []keyKind{rsa2048, rsa3072, p256, p384} {
		for _, asJWK := range []bool{false, true} {
			name := string(kind)
			if asJWK {
				name += "-jwk"
			}
			t.Run(name, func(t *testing.T) {
				key := testKey(t, kind, "platform")
				pol := newPolicy(t, 1, []platformSpec{{name: "platform", key: key, jwk: asJWK}, other}, []string{"*/demo/**", "platform", "other"})
				img := ociImage(t, 300_000, 2)
				enc, err := EncryptFor(ctx, pol, ref, img)
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Image(enc, validate.Fast); err != nil {
					t.Fatalf("encrypted image is not a valid image: %v", err)
				}
				m, _ := enc.Manifest()
				for i, d := range m.Layers {
					if d.MediaType != types.OCILayer+"+encrypted" || d.Annotations[annotationJWE] == "" || d.Annotations[annotationPubOpt] == "" || d.Annotations["org.example.index"] == "" {
						t.Errorf("layer %d descriptor %+v", i, d)
					}
				}
				rs, err := Recipients(enc)
				if err != nil {
					t.Fatal(err)
				}
				plat, _ := pol.Platform("platform")
				oth, _ := pol.Platform("other")
				if len(rs) != 4 || rs[0].KeyID != plat.Fingerprint || rs[0].Shape != policy.KeyShape(key.Public()) || rs[1].KeyID != oth.Fingerprint || rs[1].Shape != "EC-P-256" {
					t.Errorf("recipients = %v", rs)
				}
				if err := CheckRecipients(enc, pol, ref); err != nil {
					t.Fatal(err)
				}
				dec, err := Decrypt(ctx, enc, key)
				if err != nil {
					t.Fatal(err)
				}
				// Same manifest as before encryption, byte for byte.
				want, _ := img.Digest()
				got, err := dec.Digest()
				if err != nil || got != want {
					t.Fatalf("decrypted manifest digest %s (%v), want %s", got, err, want)
				}
				if !equalLayers(layerBytes(t, img), layerBytes(t, dec)) {
					t.Fatal("decrypted layers differ from plaintext")
				}
				// ocicrypt's own DecryptLayer opens what we wrote.
				ls, _ := enc.Layers()
				rc, _ := ls[0].Compressed()
				defer rc.Close()
				d0, _ := ls[0].(describedLayer).Descriptor()
				r, _, err := ocicrypt.DecryptLayer(&config.DecryptConfig{Parameters: map[string][][]byte{"privkeys": {privPEM(t, key)}, "privkeys-passwords": {nil}}},
					rc, ocispec.Descriptor{MediaType: string(d0.MediaType), Digest: digest.Digest(d0.Digest.String()), Size: d0.Size, Annotations: d0.Annotations}, false)
				if err != nil {
					t.Fatalf("ocicrypt.DecryptLayer: %v", err)
				}
				var buf bytes.Buffer
				if _, err := buf.ReadFrom(r); err != nil || !bytes.Equal(buf.Bytes(), layerBytes(t, img)[0]) {
					t.Fatalf("ocicrypt.DecryptLayer: %v, plaintext equal %v", err, bytes.Equal(buf.Bytes(), layerBytes(t, img)[0]))
				}
			})
		}
	}
}

func equalLayers(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestDockerImageBecomesOCI(t *testing.T) {
	key := testKey(t, p256, "platform")
	pol := newPolicy(t, 1, []platformSpec{{name: "p", key: key}}, []string{"**", "p"})
	img, err := random.Image(50_000, 2)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncryptFor(ctx, pol, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := enc.Manifest()
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" {
		t.Fatalf("manifest %+v", m)
	}
	dec, err := Decrypt(ctx, enc, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(dec); err != nil {
		t.Fatal(err)
	}
	if !equalLayers(layerBytes(t, img), layerBytes(t, dec)) {
		t.Fatal("plaintext differs")
	}
}

func TestPublicRuleLeavesImage(t *testing.T) {
	key := testKey(t, p256, "platform")
	pol := newPolicy(t, 1, []platformSpec{{name: "p", key: key}}, []string{"*/public/**"}, []string{"**", "p"})
	img := ociImage(t, 1000, 1)
	out, err := EncryptFor(ctx, pol, "h.test/public/x:1", img)
	if err != nil || out != img {
		t.Fatalf("public artifact: %v, same image %v", err, out == img)
	}
	if err := CheckRecipients(img, pol, "h.test/public/x:1"); err != nil {
		t.Fatal(err)
	}
	// A plaintext image where the policy requires encryption is refused.
	err = CheckRecipients(img, pol, ref)
	if !errors.Is(err, ErrNotEncrypted) || !strings.Contains(err.Error(), `rule "**" requires encryption`) {
		t.Fatalf("plaintext under encrypt rule: %v", err)
	}
	// Already encrypted input is refused by EncryptFor.
	enc, _ := EncryptFor(ctx, pol, ref, img)
	enc2, err := EncryptFor(ctx, pol, ref, enc)
	if err == nil {
		_, err = enc2.Manifest()
	}
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "already encrypted") {
		t.Fatalf("double encryption: %v", err)
	}
}

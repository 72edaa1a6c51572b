package crypt

import (
	"encoding/base64"
	"testing"
)

// FuzzJWESlots: the recipient parser reads untrusted annotations; it never
// panics, and each recipient entry it splits out is itself a JWE with that
// one entry and the same headers.
func FuzzJWESlots(f *testing.F) {
	pol, _, _ := twoPlatforms(f)
	enc, err := EncryptFor(ctx, pol, ref, ociImage(f, 100, 1))
	if err != nil {
		f.Fatal(err)
	}
	m, err := enc.Manifest()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.Layers[0].Annotations[annotationJWE])
	f.Add(base64.StdEncoding.EncodeToString([]byte(`{"protected":"eyJhbGciOiJSU0EtT0FFUCJ9","encrypted_key":"AAAA","iv":"","ciphertext":"","tag":""}`)))
	f.Add("e30=,e30=")
	f.Fuzz(func(t *testing.T, annotation string) {
		slots, err := jweSlots(annotation)
		if err != nil {
			return
		}
		for i, s := range slots {
			again, err := splitJWE([]byte(s.single))
			if err != nil || len(again) != 1 {
				t.Fatalf("slot %d does not re-parse as one entry: %v, %d", i, err, len(again))
			}
			if again[0].kid != s.kid || again[0].alg != s.alg || again[0].shape != s.shape {
				t.Fatalf("slot %d headers changed: %+v vs %+v", i, again[0], s)
			}
		}
	})
}

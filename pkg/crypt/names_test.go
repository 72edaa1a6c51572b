package crypt

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestNamePlatforms: recipients are named by the platform whose key they
// are; a key of no platform (here: the key platform b had before it was
// replaced) is an unknown key, a kid claiming a platform with the wrong key
// shape is not that platform; JSON fields are camelCase.
func TestNamePlatforms(t *testing.T) {
	pol, a, _ := twoPlatforms(t)
	enc, err := EncryptFor(ctx, pol, ref, ociImage(t, 1000, 2))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Recipients(enc)
	if err != nil {
		t.Fatal(err)
	}
	named := NamePlatforms(rs, pol)
	var got []string
	for _, r := range named {
		got = append(got, fmt.Sprintf("%d:%s", r.Layer, r.Platform))
	}
	if fmt.Sprint(got) != "[0:a 0:b 1:a 1:b]" {
		t.Fatalf("platforms %v", got)
	}
	if c := CanDecrypt(named, pol); fmt.Sprint(c) != "[a b]" {
		t.Fatalf("can decrypt %v", c)
	}
	pa, _ := pol.Platform("a")
	if w := named[0].Who(); w != "platform a (ECDH-ES+A256KW EC-P-256)" {
		t.Fatalf("Who = %q", w)
	}

	// Policy v2 gives platform b a new key: b's old key is unknown now.
	v2 := newPolicy(t, 2, []platformSpec{{name: "a", key: a}, {name: "b", key: testKey(t, rsa2048, "b2")}}, []string{"*/demo/**", "a", "b"})
	named = NamePlatforms(rs, v2)
	if named[1].Platform != "" || named[1].Who() != "unknown key "+rs[1].KeyID+" (RSA-OAEP-256 RSA-2048)" {
		t.Fatalf("old key of b: %+v %q", named[1], named[1].Who())
	}
	if c := CanDecrypt(named, v2); fmt.Sprint(c) != "[a]" {
		t.Fatalf("can decrypt with v2: %v", c)
	}
	// Only layer 0 names a: a cannot decrypt the whole artifact.
	partial := NamePlatforms([]Recipient{rs[0], {Layer: 1, Scheme: "jwe", KeyID: rs[1].KeyID, Shape: rs[1].Shape}}, v2)
	if c := CanDecrypt(partial, v2); len(c) != 0 {
		t.Fatalf("platform of one layer only can decrypt: %v", c)
	}

	relabeled := NamePlatforms([]Recipient{{Scheme: "jwe", KeyID: pa.Fingerprint, Algorithm: "RSA-OAEP-256", Shape: "RSA-2048"}}, pol)[0]
	if relabeled.Platform != "" || relabeled.Mislabeled != "a" || !strings.Contains(relabeled.Who(), `unknown key `+pa.Fingerprint+` (labeled platform "a", whose key is not of this shape)`) {
		t.Fatalf("relabeled: %+v %q", relabeled, relabeled.Who())
	}
	if w := (Recipient{Scheme: "pgp"}).Who(); w != "unidentified recipient (scheme pgp)" {
		t.Fatalf("pgp: %q", w)
	}

	b, _ := json.Marshal(NamePlatforms(rs, pol)[0])
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, want := range []string{"layer", "layerDigest", "scheme", "keyID", "algorithm", "shape", "platform"} {
		if _, ok := m[want]; !ok {
			t.Errorf("JSON %s has no %q field", b, want)
		}
	}
	if strings.Contains(string(b), `"KeyID"`) || strings.Contains(string(b), `"Layer"`) {
		t.Errorf("Go field names in JSON: %s", b)
	}
}

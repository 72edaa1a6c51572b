package policy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/big"
	"testing"

	"crypto/ecdsa"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func b64x(k *ecdsa.PrivateKey) string { return b64url(k.X, k.Curve.Params().BitSize) }
func b64y(k *ecdsa.PrivateKey) string { return b64url(k.Y, k.Curve.Params().BitSize) }

func b64url(n *big.Int, bits int) string {
	b := n.FillBytes(make([]byte, (bits+7)/8))
	return base64.RawURLEncoding.EncodeToString(b)
}

// FuzzParse: Parse never panics, and whatever it accepts survives
// Marshal -> Parse unchanged (name, version, keys, rules).
func FuzzParse(f *testing.F) {
	testKeys(f)
	inline := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: demo, version: 2}
spec:
  platforms:
  - name: a
    publicKey: '%s'
    labels: {region: eu}
  artifacts:
  - {match: "*/demo/**", platforms: [a], encrypt: true}
  - {match: "**", platforms: [], encrypt: false}
`, jwkOf(f, ecKey.Public()))
	f.Add([]byte(inline))
	f.Add([]byte(`{"apiVersion":"stepseal.dev/v1alpha1","kind":"PlatformPolicy","metadata":{"name":"x"},"spec":{"platforms":[],"artifacts":[]}}`))
	f.Add([]byte(`{"payloadType":"application/vnd.stepseal.platform-policy+json","payload":"e30=","signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz", Options{})
		if err != nil {
			return
		}
		out, err := Marshal(p)
		if err != nil {
			t.Fatalf("Marshal of an accepted policy: %v", err)
		}
		q, err := Parse(out, "fuzz-marshaled", Options{})
		if err != nil {
			t.Fatalf("re-parse of marshaled policy: %v\n%s", err, out)
		}
		out2, err := Marshal(q)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable: %v\n%s\n%s", err, out, out2)
		}
		for _, ref := range []string{"h/demo/x", "index.docker.io/library/x", "a/b/c/d"} {
			r1, e1 := p.Rule(ref)
			r2, e2 := q.Rule(ref)
			if fmt.Sprint(r1, e1 == nil) != fmt.Sprint(r2, e2 == nil) {
				t.Fatalf("Rule(%s) differs after Marshal: %v/%v vs %v/%v", ref, r1, e1, r2, e2)
			}
		}
	})
}

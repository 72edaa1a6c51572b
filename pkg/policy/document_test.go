package policy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestErrorsMatchTheSharedVocabulary: every sentinel of this package is one
// reason of pkg/reject; a policy signature failure is the same
// reject.ErrSignature as signing.ErrSignature, and the failure of signing
// under it stays reachable with errors.Is.
func TestErrorsMatchTheSharedVocabulary(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason *reject.Reason
	}{
		{ErrInvalid, reject.ErrMalformed},
		{ErrSignature, reject.ErrSignature},
		{ErrRollback, reject.ErrRollback},
		{ErrState, reject.ErrUnavailable},
		{ErrNoRule, reject.ErrPolicy},
		{ErrUnauthorizedPlatform, reject.ErrPolicy},
	} {
		err := fmt.Errorf("context: %w", c.err)
		if !errors.Is(err, c.err) || !errors.Is(err, c.reason) || reject.Of(err) != c.reason {
			t.Errorf("%v: want errors.Is %v, reject.Of = %v", c.err, c.reason, reject.Of(err))
		}
	}

	ctx := context.Background()
	p, err := Load(examplePolicy(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ss, vs := owners(t, 2)
	env, err := Sign(ctx, p, ss[0])
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	_ = json.Unmarshal(env, &e)
	e["payload"] = b64(`{"tampered":true}`)
	bad, _ := json.Marshal(e)
	_, err = Parse(bad, "tampered", Options{Keys: vs[:1]})
	for _, target := range []error{ErrSignature, reject.ErrSignature, reject.ErrRefused, signing.ErrSignature} {
		if !errors.Is(err, target) {
			t.Errorf("tampered signed policy: %v does not match %v", err, target)
		}
	}
	if _, err := p.Rule("h/elsewhere/x"); !errors.Is(err, reject.ErrPolicy) {
		t.Errorf("no rule: %v, want reject.ErrPolicy", err)
	}
	_, err = Parse([]byte("apiVersion: [unclosed\n"), "broken", Options{})
	var cause oneLineError
	if !errors.Is(err, reject.ErrMalformed) || strings.Contains(err.Error(), "\n") || !errors.As(err, &cause) || cause.err == nil {
		t.Errorf("malformed policy: %v, want a one-line reject.ErrMalformed keeping its cause", err)
	}
}

// TestDecodeDocument: the typed document decodes what Parse accepts,
// refuses what it refuses as a format error, and edits survive Marshal.
func TestDecodeDocument(t *testing.T) {
	testKeys(t)
	data, err := os.ReadFile(examplePolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeDocument(data, "example")
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != Kind || d.APIVersion != APIVersion || len(d.Spec.Platforms) == 0 || len(d.Spec.Artifacts) == 0 {
		t.Fatalf("decoded %+v", d)
	}
	// Replace every key by an inline one, as stepseal run does.
	for i := range d.Spec.Platforms {
		if !d.Spec.Platforms[i].HasPublicKey() {
			t.Fatalf("platform %s has no key", d.Spec.Platforms[i].Name)
		}
		if err := d.Spec.Platforms[i].SetPublicKey(ecKeyN(t, i).Public()); err != nil {
			t.Fatal(err)
		}
	}
	out, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(out, "edited", Options{})
	if err != nil {
		t.Fatalf("edited document: %v\n%s", err, out)
	}
	for i, pl := range p.Platforms {
		fp, _ := Fingerprint(ecKeyN(t, i).Public())
		if pl.Fingerprint != fp {
			t.Errorf("platform %s: key %s, want the one set (%s)", pl.Name, pl.Fingerprint, fp)
		}
	}

	for _, c := range []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: x\nkind: y\nextra: 1\n", "extra"},
		{"duplicate field", "apiVersion: x\napiVersion: y\n", "apiVersion"},
		{"two documents", "apiVersion: x\n---\nkind: y\n", "more than one YAML document"},
		{"not a mapping", "- a\n- b\n", "invalid platform policy"},
		{"too large", "apiVersion: x\n" + strings.Repeat("#", MaxSize), "larger than"},
	} {
		if _, err := DecodeDocument([]byte(c.doc), c.name); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid containing %q", c.name, err, c.want)
		}
	}
	var e PlatformEntry
	if e.HasPublicKey() {
		t.Error("an entry without publicKey has one")
	}
}

var ecKeysN []*ecdsa.PrivateKey

// ecKeyN is the i-th of a list of EC P-256 keys made on demand.
func ecKeyN(t testing.TB, i int) *ecdsa.PrivateKey {
	t.Helper()
	for len(ecKeysN) <= i {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ecKeysN = append(ecKeysN, k)
	}
	return ecKeysN[i]
}

// FuzzDecodeDocument: DecodeDocument never panics, and a document it
// accepts survives Marshal → DecodeDocument unchanged.
func FuzzDecodeDocument(f *testing.F) {
	testKeys(f)
	f.Add([]byte(fmt.Sprintf("apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: demo, version: 2}\nspec:\n  platforms:\n  - name: a\n    publicKey: '%s'\n    labels: {region: eu}\n  - {name: b}\n  artifacts:\n  - {match: \"*/demo/**\", platforms: [a, b], encrypt: true}\n", jwkOf(f, ecKey.Public()))))
	f.Add([]byte(`{"apiVersion":"stepseal.dev/v1alpha1","kind":"PlatformPolicy","metadata":{"name":"x"},"spec":{"platforms":[{"name":"p","publicKey":{"kty":"EC"}}],"artifacts":[]}}`))
	f.Add([]byte("apiVersion: x\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDocument(data, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		out, err := d.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a decoded document: %v", err)
		}
		d2, err := DecodeDocument(out, "fuzz-marshaled")
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, out)
		}
		out2, err := d2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}

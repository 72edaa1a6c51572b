package policy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
)

// examplePolicy writes the example (keys as relative paths) and
// returns its path.
func examplePolicy(t *testing.T) string {
	t.Helper()
	testKeys(t)
	dir := t.TempDir()
	writeFile(t, dir, "prod-eu.pub", pemOf(t, rsaKey.Public()))
	writeFile(t, dir, "prod-us.jwk", jwkOf(t, ecKey.Public()))
	return writeFile(t, dir, "policy.yaml", `apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: demo, version: 3}
spec:
  platforms:
  - name: prod-eu
    publicKey: prod-eu.pub
    labels: {region: eu}
  - name: prod-us
    publicKey: prod-us.jwk
  artifacts:
  - match: "*/demo/secret/**"
    platforms: [prod-eu]
    encrypt: true
  - match: "*/demo/**"
    platforms: [prod-eu, prod-us]
    encrypt: true
  - match: "ghcr.io/public/*"
    platforms: []
    encrypt: false
`)
}

func TestLoadAndRule(t *testing.T) {
	p, err := Load(examplePolicy(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "demo" || p.Version != 3 || len(p.Platforms) != 2 || len(p.SignedBy) != 0 {
		t.Fatalf("policy = %+v", p)
	}
	eu, _ := p.Platform("prod-eu")
	if eu.Labels["region"] != "eu" {
		t.Errorf("labels = %v", eu.Labels)
	}
	if want, _ := Fingerprint(rsaKey.Public()); eu.Fingerprint != want {
		t.Errorf("fingerprint %s, want %s", eu.Fingerprint, want)
	}
	for _, tc := range []struct {
		ref       string
		match     string
		platforms string
		encrypt   bool
	}{
		{"localhost:5000/demo/app:v1", "*/demo/**", "prod-eu,prod-us", true},
		{"localhost:5000/demo/app@sha256:" + strings.Repeat("a", 64), "*/demo/**", "prod-eu,prod-us", true},
		{"Registry.Example.COM/demo/app/sub", "*/demo/**", "prod-eu,prod-us", true},
		{"reg.io/demo/secret/x:latest", "*/demo/secret/**", "prod-eu", true}, // first match wins
		{"reg.io/demo/secret", "*/demo/secret/**", "prod-eu", true},          // ** matches zero segments
		{"demo/app", "*/demo/**", "prod-eu,prod-us", true},                   // Docker Hub: index.docker.io/demo/app
		{"quay.io/team/demo/app", "", "", false},                             // * is exactly one segment
		{"ghcr.io/public/tool:1", "ghcr.io/public/*", "", false},
	} {
		r, err := p.Rule(tc.ref)
		if tc.match == "" {
			if !errors.Is(err, ErrNoRule) {
				t.Errorf("Rule(%s) = %+v, %v; want ErrNoRule", tc.ref, r, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Rule(%s): %v", tc.ref, err)
			continue
		}
		var names []string
		for _, pl := range r.Platforms {
			names = append(names, pl.Name)
		}
		if r.Match != tc.match || strings.Join(names, ",") != tc.platforms || r.Encrypt != tc.encrypt {
			t.Errorf("Rule(%s) = %s %v %v, want %s %s %v", tc.ref, r.Match, names, r.Encrypt, tc.match, tc.platforms, tc.encrypt)
		}
	}
	_, err = p.Rule("other.io/x/y:1")
	if !errors.Is(err, ErrNoRule) || !strings.Contains(err.Error(), "other.io/x/y") || !strings.Contains(err.Error(), `"demo" version 3`) {
		t.Errorf("unknown artifact: %v", err)
	}
	if _, err := p.Rule("UPPER CASE::"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad reference: %v", err)
	}
}

func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		pat, repo string
		want      bool
	}{
		{"*/demo/**", "h:5000/demo", true},
		{"*/demo/**", "h/demo/a/b/c", true},
		{"*/demo/**", "h/x/demo/a", false},
		{"**/app", "h/a/b/app", true},
		{"**/app", "app", true},
		{"h/*/app", "h/a/b/app", false},
		{"h/team-*/app", "h/team-x/app", true},
		{"h/team-*/app", "h/team-x/y/app", false},
		{"h/**/x/**", "h/x", true},
		{"h/app?", "h/app1", true},
		{"h/[ab]pp", "h/bpp", true},
		{"H/App", "h/app", true},
	} {
		p, err := compilePattern(tc.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.match(tc.repo); got != tc.want {
			t.Errorf("%q match %q = %v, want %v", tc.pat, tc.repo, got, tc.want)
		}
	}
	for _, bad := range []string{"", " a/b", "a//b", "a/**x/b", "a/[/b", "**/a/**/b/**/c/**/d/**"} {
		if _, err := compilePattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestKeyForms(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}))
	writeFile(t, dir, "k.pub", pkcs1)
	indent := func(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ") }
	doc := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: forms}
spec:
  platforms:
  - name: pkcs1-file
    publicKey: k.pub
  - name: inline-pem
    publicKey: |
      %s
  - name: inline-jwk-string
    publicKey: '%s'
  - name: jwk-object
    publicKey: {"kty": "EC", "crv": "P-384", "x": %q, "y": %q}
  artifacts:
  - match: "**"
    platforms: [pkcs1-file, inline-pem, inline-jwk-string, jwk-object]
    encrypt: true
`, indent(pemOf(t, ecKey.Public())), jwkOf(t, mustRSA(t, 3072).Public()), b64x(ec384Key), b64y(ec384Key))
	p, err := Parse([]byte(doc), "forms.yaml", Options{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"RSA-2048", "EC-P-256", "RSA-3072", "EC-P-384"}
	for i, pl := range p.Platforms {
		if got := KeyShape(pl.PublicKey); got != want[i] {
			t.Errorf("%s: %s, want %s", pl.Name, got, want[i])
		}
	}
	if p.Version != 0 {
		t.Errorf("version %d", p.Version)
	}
	// Without a base directory (bytes from elsewhere) a key path is refused.
	if _, err := Parse([]byte(doc), "forms.yaml", Options{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `spec.platforms[0](pkcs1-file).publicKey: key path "k.pub"`) {
		t.Errorf("path without base dir: %v", err)
	}
}

func mustRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStrictErrors(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	writeFile(t, dir, "ok.pub", pemOf(t, ecKey.Public()))
	writeFile(t, dir, "ok2.pub", pemOf(t, rsaKey.Public()))
	writeFile(t, dir, "weak.pub", pemOf(t, mustRSA(t, 1024).Public()))
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	writeFile(t, dir, "ed.pub", pemOf(t, edPub))
	der, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	writeFile(t, dir, "priv.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	writeFile(t, dir, "privjwk.json", jwkOf(t, ecKey))
	writeFile(t, dir, "sig.jwk", strings.Replace(jwkOf(t, ecKey.Public()), "{", `{"use":"sig",`, 1))

	head := "apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: t}\n"
	body := func(platforms, artifacts string) string {
		return head + "spec:\n  platforms:\n" + platforms + "  artifacts:\n" + artifacts
	}
	okPlat := "  - {name: a, publicKey: ok.pub}\n"
	okArt := "  - {match: \"**\", platforms: [a], encrypt: true}\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", body(okPlat, "  - {match: \"**\", platforms: [a], encrypt: true, extra: 1}\n"), `unknown field "extra"`},
		{"unknown top field", head + "foo: bar\nspec: {}\n", `unknown field "foo"`},
		{"duplicate yaml key", head + "metadata: {name: u}\nspec: {}\n", `"metadata" already set`},
		{"duplicate platform", body(okPlat+"  - {name: a, publicKey: ok2.pub}\n", okArt), `spec.platforms[1].name: duplicate platform "a"`},
		{"same key twice", body(okPlat+"  - {name: b, publicKey: ok.pub}\n", okArt), `spec.platforms[1](b).publicKey: same key as platform "a"`},
		{"unknown platform", body(okPlat, "  - {match: \"**\", platforms: [a, nope], encrypt: true}\n"), `spec.artifacts[0].platforms[1]: unknown platform "nope"`},
		{"platform twice", body(okPlat, "  - {match: \"**\", platforms: [a, a], encrypt: true}\n"), `platform "a" listed twice`},
		{"empty match", body(okPlat, "  - {match: \"\", platforms: [a], encrypt: true}\n"), `spec.artifacts[0].match: empty pattern`},
		{"repeated match", body(okPlat, okArt+okArt), `spec.artifacts[1].match: "**" repeats spec.artifacts[0]`},
		{"platforms without encrypt", body(okPlat, "  - {match: \"x/**\", platforms: [a]}\n"), `spec.artifacts[0].encrypt: false, but platforms are listed`},
		{"encrypt without platform", body(okPlat, "  - {match: \"x/**\", platforms: [], encrypt: true}\n"), `encrypt is true but no platform may decrypt`},
		{"weak rsa", body("  - {name: a, publicKey: weak.pub}\n", okArt), `weak.pub: RSA key of 1024 bits, need 2048`},
		{"ed25519", body("  - {name: a, publicKey: ed.pub}\n", okArt), `unsupported key type ed25519.PublicKey`},
		{"private pem", body("  - {name: a, publicKey: priv.pem}\n", okArt), `"PRIVATE KEY" is a private key`},
		{"private jwk", body("  - {name: a, publicKey: privjwk.json}\n", okArt), `JWK is a private key`},
		{"signing jwk", body("  - {name: a, publicKey: sig.jwk}\n", okArt), `JWK "use" is "sig"`},
		{"missing key file", body("  - {name: a, publicKey: none.pub}\n", okArt), `none.pub: no such file`},
		{"no key", body("  - {name: a}\n", okArt), `spec.platforms[0](a).publicKey: missing`},
		{"bad name", body("  - {name: A_b, publicKey: ok.pub}\n", okArt), `spec.platforms[0].name: "A_b"`},
		{"version zero", strings.Replace(body(okPlat, okArt), "{name: t}", "{name: t, version: 0}", 1), `metadata.version: 0 is not a positive integer`},
		{"version string", strings.Replace(body(okPlat, okArt), "{name: t}", "{name: t, version: '3'}", 1), `version`},
		{"wrong kind", strings.Replace(body(okPlat, okArt), "PlatformPolicy", "Layout", 1), `kind: "Layout"`},
		{"no artifacts", head + "spec:\n  platforms:\n" + okPlat, `spec.artifacts: no artifact rule`},
		{"multi document", body(okPlat, okArt) + "---\n" + body(okPlat, okArt), `more than one YAML document`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, "p.yaml", tc.doc)
			_, err := Load(path, Options{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, path) || strings.Contains(msg, "\n") {
				t.Errorf("err = %q, want one line naming %s and containing %q", msg, path, tc.want)
			}
		})
	}
	big := writeFile(t, dir, "big.yaml", head+"#"+strings.Repeat("x", MaxSize))
	if _, err := Load(big, Options{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized: %v", err)
	}
}

func owners(t *testing.T, n int) ([]signing.Signer, []signing.Verifier) {
	t.Helper()
	var ss []signing.Signer
	var vs []signing.Verifier
	for range n {
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := signing.NewSigner(k)
		v, _ := signing.NewVerifier(k.Public())
		ss, vs = append(ss, s), append(vs, v)
	}
	return ss, vs
}

func TestSignedPolicy(t *testing.T) {
	ctx := context.Background()
	path := examplePolicy(t)
	p, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ss, vs := owners(t, 3)
	env, err := Sign(ctx, p, ss[0], ss[1])
	if err != nil {
		t.Fatal(err)
	}
	// Key files are gone: the signed envelope stands alone.
	signedPath := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(signedPath, env, 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := Load(signedPath, Options{Keys: vs, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.SignedBy) != 2 || sp.Version != 3 || string(sp.Raw()) != string(env) {
		t.Fatalf("signed policy: signedBy %v version %d raw equal %v", sp.SignedBy, sp.Version, string(sp.Raw()) == string(env))
	}
	for i := range p.Platforms {
		if p.Platforms[i].Fingerprint != sp.Platforms[i].Fingerprint {
			t.Errorf("platform %d key changed through signing", i)
		}
	}
	r1, _ := p.Rule("h/demo/x")
	r2, _ := sp.Rule("h/demo/x")
	if fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Errorf("rules differ after signing: %v vs %v", r1, r2)
	}

	check := func(name string, data []byte, opts Options, want error, msg string) {
		t.Helper()
		_, err := Parse(data, name, opts)
		if !errors.Is(err, want) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: err = %v, want %v containing %q", name, err, want, msg)
		}
	}
	check("threshold", env, Options{Keys: vs, Threshold: 3}, ErrSignature, "threshold")
	check("wrong keys", env, Options{Keys: vs[2:]}, ErrSignature, "threshold")
	check("no keys", env, Options{}, ErrSignature, "no policy key was given")
	plain, _ := os.ReadFile(path)
	check("unsigned with keys", plain, Options{Keys: vs, BaseDir: filepath.Dir(path)}, ErrSignature, "is not signed")
	check("rollback", env, Options{Keys: vs, MinVersion: 4}, ErrRollback, "version 3 is older than version 4")

	// Modify the payload after signing: add a platform-wide rule.
	var e map[string]any
	_ = json.Unmarshal(env, &e)
	doc, _ := Marshal(p)
	tampered := strings.Replace(string(doc), `"match": "*/demo/secret/**"`, `"match": "**"`, 1)
	e["payload"] = b64(tampered)
	bad, _ := json.Marshal(e)
	check("modified after signing", bad, Options{Keys: vs}, ErrSignature, "signature verification failed")

	// A signed payload with a key path is refused even with a valid signature.
	withPath := strings.Replace(string(doc), `"publicKey": "-----BEGIN PUBLIC KEY-----`, `"publicKey": "prod-eu.pub", "x": "-----BEGIN PUBLIC KEY-----`, 1)
	withPath = withPath[:strings.Index(withPath, `, "x":`)] + withPath[strings.Index(withPath, `-----END PUBLIC KEY-----\n"`)+len(`-----END PUBLIC KEY-----\n"`):]
	penv, err := signing.SignEnvelope(ctx, PayloadType, []byte(withPath), ss[0])
	if err != nil {
		t.Fatal(err)
	}
	praw, _ := json.Marshal(penv)
	check("key path in signed policy", praw, Options{Keys: vs, BaseDir: filepath.Dir(path)}, ErrInvalid, `key path "prod-eu.pub" in a signed policy`)

	wrongType, _ := signing.SignEnvelope(ctx, "application/vnd.in-toto+json", doc, ss[0])
	wraw, _ := json.Marshal(wrongType)
	check("payload type", wraw, Options{Keys: vs}, ErrSignature, "payload type")

	p.Version = 0
	if _, err := Sign(ctx, p, ss[0]); !errors.Is(err, ErrInvalid) {
		t.Errorf("signing an unversioned policy: %v", err)
	}
}

package publish

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// env is a real Distribution registry, a publisher key and the platforms
// "eu" and "us" (EC P-256), with a policy v1 that encrypts */demo/** to
// both and publishes */public/** in the clear.
type env struct {
	t         *testing.T
	srv       *testregistry.Server
	host      string
	dir       string
	c         *oci.Client
	publisher crypto.Signer
	platform  map[string]*ecdsa.PrivateKey
	pol       *policy.Policy
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, srv: testregistry.StartServer(t), dir: t.TempDir(), platform: map[string]*ecdsa.PrivateKey{}}
	e.host = e.srv.Host
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	e.publisher = genKey(t)
	for _, n := range []string{"eu", "us", "other"} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		e.platform[n] = k
	}
	e.pol = e.policy(1, "[eu, us]")
	return e
}

func genKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// policyDoc is the policy text of version v whose */demo/** rule lets
// demo decrypt.
func (e *env) policyDoc(v int, demo string) []byte {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: test, version: %d}\nspec:\n  platforms:\n", v)
	for _, n := range []string{"eu", "us", "other"} {
		pem, err := signing.MarshalPublicKeyPEM(e.platform[n].Public())
		if err != nil {
			e.t.Fatal(err)
		}
		js, _ := json.Marshal(string(pem))
		fmt.Fprintf(&b, "  - name: %s\n    publicKey: %s\n", n, js)
	}
	fmt.Fprintf(&b, "  artifacts:\n  - {match: \"*/demo/**\", platforms: %s, encrypt: true}\n  - {match: \"*/public/**\", platforms: [], encrypt: false}\n", demo)
	return []byte(b.String())
}

func (e *env) policy(v int, demo string) *policy.Policy {
	e.t.Helper()
	p, err := policy.Parse(e.policyDoc(v, demo), fmt.Sprintf("policy-v%d", v), policy.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) ref(s string) name.Reference {
	e.t.Helper()
	r, err := e.c.ParseReference(e.host + "/" + s)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// file writes n random bytes to a file and returns it as an artifact.
func (e *env) file(base string, n int) (string, v1.Image) {
	e.t.Helper()
	p := filepath.Join(e.dir, base)
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	img, err := oci.FromFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return p, img
}

func (e *env) publish(img v1.Image, ref string, atts ...Attestation) *Result {
	e.t.Helper()
	r, err := Publish(context.Background(), e.c, img, e.ref(ref), Options{Policy: e.pol, Key: e.publisher, Attestations: atts})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// tagged returns the digest ref's tag points to, "" when it has none.
func (e *env) tagged(ref string) string {
	e.t.Helper()
	d, err := e.c.Resolve(context.Background(), e.ref(ref))
	if errors.Is(err, oci.ErrNotFound) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return d.DigestStr()
}

// repositoryExists reports whether anything was ever pushed to repo.
func (e *env) repositoryExists(repo string) bool {
	_, err := os.Stat(filepath.Join(e.srv.StorageDir, "docker", "registry", "v2", "repositories", repo))
	return err == nil
}

// statement is an in-toto v1 statement about a sha256 digest, signed by key.
func statement(t testing.TB, hexDigest string, key crypto.Signer) *dsse.Envelope {
	t.Helper()
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject":       []map[string]any{{"name": "app.bin", "digest": map[string]string{"sha256": hexDigest}}},
		"predicate":     map[string]any{"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/test/v1"}},
	}
	raw, _ := json.Marshal(st)
	s, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, raw, s)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func fileHex(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// refusingProxy forwards to the registry at host, and answers 400 to any
// manifest PUT whose path matches refuse: a registry failing in the middle
// of the push → sign → attest → tag sequence.
func refusingProxy(t *testing.T, host string, refuse func(method, path string) bool) string {
	t.Helper()
	target, _ := url.Parse("http://" + host)
	rp := httputil.NewSingleHostReverseProxy(target)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse(r.Method, r.URL.Path) {
			http.Error(w, `{"errors":[{"code":"DENIED","message":"refused by the test"}]}`, http.StatusBadRequest)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

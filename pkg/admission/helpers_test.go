package admission

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ita "github.com/in-toto/attestation/go/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/vsa"
)

const (
	verifierID       = "https://stepseal.dev/verifier/test"
	vsaPredicateType = "https://slsa.dev/verification_summary/v1"
)

// env is a real Distribution registry, a publisher key, a verifier key,
// platforms eu/us/other, a platform policy that encrypts */demo/** to eu
// and us, and an admission policy whose rules cover 127.0.0.1:*/…
type env struct {
	t         testing.TB
	host      string
	c         *oci.Client
	publisher crypto.Signer
	verifier  crypto.Signer
	platform  map[string]*ecdsa.PrivateKey
	ppol      *policy.Policy
	pol       *Policy
	nop       name.Digest
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, host: testregistry.Start(t), platform: map[string]*ecdsa.PrivateKey{}}
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	e.publisher, e.verifier = genKey(t), genKey(t)
	for _, n := range []string{"eu", "us", "other"} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		e.platform[n] = k
	}
	e.ppol = e.platformPolicy("[eu, us]")
	e.nop = e.push("tekton/nop")
	e.pol = e.policy()
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

func pemOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := signing.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(string(b))
	return string(js)
}

func (e *env) platformPolicy(demo string) *policy.Policy {
	e.t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: test, version: 1}\nspec:\n  platforms:\n")
	for _, n := range []string{"eu", "us", "other"} {
		fmt.Fprintf(&b, "  - name: %s\n    publicKey: %s\n", n, pemOf(e.t, e.platform[n].Public()))
	}
	fmt.Fprintf(&b, "  artifacts:\n  - {match: \"*/demo/**\", platforms: %s, encrypt: true}\n  - {match: \"**\", platforms: [], encrypt: false}\n", demo)
	p, err := policy.Parse([]byte(b.String()), "platform-policy", policy.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) policyDoc() string {
	return fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: AdmissionPolicy
rules:
- name: tekton-infra
  images: ["127.0.0.1:*/tekton/**"]
  require: digest
  digests: [%q]
- name: apps
  images: ["127.0.0.1:*/apps/**"]
  require: signed
  keys: [%s]
- name: warned
  images: ["127.0.0.1:*/warned/**"]
  require: signed
  mode: warn
  keys: [%s]
- name: trusted
  images: ["127.0.0.1:*/trusted/**"]
  require: signed
  keysFrom: trust
- name: builds
  images: ["127.0.0.1:*/builds/**"]
  require: vsa
  vsa: {verifier: %q, maxAge: 1h, key: %s}
- name: demo
  images: ["127.0.0.1:*/demo/**"]
  require: signed
  platforms: [eu]
  keys: [%s]
`, e.nop.DigestStr(), pemOf(e.t, e.publisher.Public()), pemOf(e.t, e.publisher.Public()), verifierID, pemOf(e.t, e.verifier.Public()), pemOf(e.t, e.publisher.Public()))
}

func (e *env) policy() *Policy {
	e.t.Helper()
	p, err := ParsePolicy([]byte(e.policyDoc()))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// decider is a Decider for platform eu with a fresh cache, over client c
// (e.c when nil).
func (e *env) decider(mod func(*Config)) *Decider {
	e.t.Helper()
	cfg := Config{Policy: e.pol, Platform: "eu", PlatformPolicy: e.ppol, Registry: e.c, VSA: RegistryVSA{Registry: e.c}, Deadline: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewDecider(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// push writes a random image to host/repo:v1 and returns its digest ref.
func (e *env) pushAt(host, repo string) name.Digest {
	e.t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.write(host, repo, img)
}

func (e *env) push(repo string) name.Digest { return e.pushAt(e.host, repo) }

func (e *env) write(host, repo string, img v1.Image) name.Digest {
	e.t.Helper()
	tag, err := name.NewTag(host+"/"+repo+":v1", name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		e.t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		e.t.Fatal(err)
	}
	return tag.Context().Digest(h.String())
}

func (e *env) sign(d name.Digest, key crypto.Signer) {
	e.t.Helper()
	if err := e.c.Sign(context.Background(), d, key); err != nil {
		e.t.Fatal(err)
	}
}

// encrypted publishes a random image to repo encrypted per pol, signed by
// the publisher.
func (e *env) encrypted(repo string, pol *policy.Policy) name.Digest {
	e.t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	ref, err := e.c.ParseReference(e.host + "/" + repo + ":v1")
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := publish.Publish(context.Background(), e.c, img, ref, publish.Options{Policy: pol, Key: e.publisher})
	if err != nil {
		e.t.Fatal(err)
	}
	if !r.Encrypted {
		e.t.Fatalf("%s not encrypted", repo)
	}
	return r.Digest
}

// attestVSA attaches a VSA for d, built and signed with pkg/vsa (the
// controller's), with resourceUri d's repository and layout digest
// layoutDigest ("sha256:<hex>", the layout of layoutOf when "").
func (e *env) attestVSA(d name.Digest, key crypto.Signer, verifier, result string, verified time.Time) {
	e.t.Helper()
	e.attestVSAFor(d, d, key, verifier, result, verified, layoutDigest)
}

// layoutDigest is the digest of the layout the test VSAs were verified
// against.
var layoutDigest = "sha256:" + strings.Repeat("ab", 32)

// attestVSAFor attaches to d a VSA about subject.
func (e *env) attestVSAFor(d, subject name.Digest, key crypto.Signer, verifier, result string, verified time.Time, layout string) {
	e.t.Helper()
	sub, err := vsa.ImageSubject(subject.String())
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := signing.NewSigner(key)
	if err != nil {
		e.t.Fatal(err)
	}
	env, _, err := vsa.Sign(context.Background(), vsa.Summary{
		VerifierID: verifier, Time: verified, Result: result,
		ResourceURI:  vsa.ResourceURI(subject.Context().RegistryStr(), subject.Context().RepositoryStr()),
		Subjects:     []*ita.ResourceDescriptor{sub},
		PolicyURI:    "tuf:layouts/builds.layout?role=targets&version=1",
		PolicyDigest: map[string]string{"sha256": strings.TrimPrefix(layout, "sha256:")},
	}, s)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.Attest(context.Background(), d, env, vsa.PredicateType); err != nil {
		e.t.Fatal(err)
	}
}

// keySource is a trust source whose keys change with its version.
type keySource struct {
	mu      sync.Mutex
	version int
	keys    []crypto.PublicKey
}

func (k *keySource) KeysFor(context.Context, string, *Rule) ([]crypto.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, nil
}

func (k *keySource) Version() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return fmt.Sprint(k.version)
}

func (k *keySource) set(v int, keys ...crypto.PublicKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.version, k.keys = v, keys
}

// countingProxy is a reverse proxy in front of the registry that counts
// the requests it forwards; its host is another 127.0.0.1 port.
type countingProxy struct {
	host string
	n    atomic.Int64
}

func newCountingProxy(t *testing.T, backend string) *countingProxy {
	t.Helper()
	p := &countingProxy{}
	var h http.Handler = http.NotFoundHandler()
	if backend != "" {
		u, _ := url.Parse("http://" + backend)
		h = httputil.NewSingleHostReverseProxy(u)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func pod(images ...string) *corev1.Pod {
	p := &corev1.Pod{}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return p
}

// wantDenied asserts a decision refuses with target and a message
// containing every want.
func wantDenied(t *testing.T, dec Decision, target error, want ...string) {
	t.Helper()
	if dec.Allowed {
		t.Fatalf("allowed: %+v", dec)
	}
	err := dec.Err()
	if !errors.Is(err, target) {
		t.Fatalf("error %v is not %v", err, target)
	}
	var ie *ImageError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v is not an *ImageError", err)
	}
	for _, w := range want {
		if !strings.Contains(dec.Message(), w) {
			t.Errorf("message %q lacks %q", dec.Message(), w)
		}
	}
}

func wantAllowed(t *testing.T, dec Decision) {
	t.Helper()
	if !dec.Allowed {
		t.Fatalf("denied: %s", dec.Message())
	}
}

// mustImage reads the image d from the registry.
func mustImage(t *testing.T, e *env, d name.Digest) v1.Image {
	t.Helper()
	img, err := remote.Image(d, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

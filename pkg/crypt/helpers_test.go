package crypt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stepseal/stepseal/pkg/policy"
)

type keyKind string

const (
	rsa2048 keyKind = "rsa2048"
	rsa3072 keyKind = "rsa3072"
	p256    keyKind = "p256"
	p384    keyKind = "p384"
)

var (
	keyMu    sync.Mutex
	keyCache = map[string]crypto.Signer{}
)

// testKey returns a key per (kind, name), generated once per test binary.
func testKey(t testing.TB, kind keyKind, name string) crypto.Signer {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	id := string(kind) + "/" + name
	if k, ok := keyCache[id]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch kind {
	case rsa2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case rsa3072:
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case p256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case p384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	keyCache[id] = k
	return k
}

func pubPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func privPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func jwk(t testing.TB, key any) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type platformSpec struct {
	name string
	key  crypto.Signer
	jwk  bool
}

// newPolicy builds a policy whose platforms carry inline keys; rules are
// (match, platform names) pairs, all with encrypt: true unless no platform
// is named.
func newPolicy(t testing.TB, version int, platforms []platformSpec, rules ...[]string) *policy.Policy {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nmetadata: {name: test, version: %d}\nspec:\n  platforms:\n", version)
	for _, p := range platforms {
		var key string
		if p.jwk {
			key = jwk(t, p.key.Public())
		} else {
			key = pubPEM(t, p.key.Public())
		}
		k, _ := json.Marshal(key)
		fmt.Fprintf(&b, "  - name: %s\n    publicKey: %s\n", p.name, k)
	}
	b.WriteString("  artifacts:\n")
	for _, r := range rules {
		names, _ := json.Marshal(r[1:])
		fmt.Fprintf(&b, "  - {match: %q, platforms: %s, encrypt: %v}\n", r[0], names, len(r) > 1)
	}
	p, err := policy.Parse([]byte(b.String()), "test-policy", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ociImage is a random OCI image with n gzip layers of size bytes.
func ociImage(t testing.TB, size int64, n int) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i := range n {
		l, err := random.Layer(size+int64(i), types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, Annotations: map[string]string{"org.example.index": fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func readAll(t testing.TB, l v1.Layer) ([]byte, error) {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func layerBytes(t testing.TB, img v1.Image) [][]byte {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range ls {
		b, err := readAll(t, l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

package oci

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/signing"
)

// testOpts are the options every test uses: plain HTTP to loopback, no progress.
var testOpts = []Option{WithInsecure(), WithProgress(nil)}

// target is a registry under test.
type target struct {
	name string
	host string
	// srv is set for the Distribution registry (storage directory access).
	srv *testregistry.Server
	// referrersAPI tells whether the registry implements the OCI 1.1 referrers API.
	referrersAPI bool
}

// inProcess starts go-containerregistry's registry with the referrers API.
func inProcess(t testing.TB) target {
	t.Helper()
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return target{name: "ggcr", host: strings.TrimPrefix(s.URL, "http://"), referrersAPI: true}
}

// distribution starts the real CNCF Distribution registry (no referrers API).
func distribution(t testing.TB) target {
	t.Helper()
	s := testregistry.StartServer(t)
	return target{name: "distribution", host: s.Host, srv: s}
}

func targets(t *testing.T) []target {
	return []target{inProcess(t), distribution(t)}
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := ParseReference(s, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pushRandom pushes a random image to host/repo:tag and returns its digest ref.
func pushRandom(t testing.TB, host, repo, tag string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Push(context.Background(), img, mustRef(t, host+"/"+repo+":"+tag), testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeRandomFile(t testing.TB, p string, n int, seed int64) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// statementFor makes an in-toto v1 SLSA provenance statement about d.
func statementFor(d name.Digest, predicateType string) []byte {
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": predicateType,
		"subject": []map[string]any{{
			"name":   d.Context().Name(),
			"digest": map[string]string{"sha256": strings.TrimPrefix(d.DigestStr(), "sha256:")},
		}},
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/test/v1", "externalParameters": map[string]any{}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://stepseal.dev/test"}},
		},
	}
	b, _ := json.Marshal(st)
	return b
}

func envelopeFor(t testing.TB, d name.Digest, predicateType string, key crypto.Signer) *dsse.Envelope {
	t.Helper()
	s, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, statementFor(d, predicateType), s)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func genKey(t testing.TB, kt signing.KeyType) crypto.Signer {
	t.Helper()
	k, err := signing.Generate(kt)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePub(t testing.TB, dir string, k crypto.Signer) string {
	t.Helper()
	b, err := signing.MarshalPublicKeyPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fmt.Sprintf("pub-%x.pem", sha256.Sum256(b)))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func manifestOf(t testing.TB, ref name.Reference) *v1.Manifest {
	t.Helper()
	img, err := Pull(context.Background(), ref, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func equalFiles(t testing.TB, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

package generate

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// testExpiry is far enough ahead for in-toto's expiry check, and fixed so
// golden files do not change.
// exampleFunctionaries is the go-build example's Functionaries file.
const exampleFunctionaries = "../../../examples/go-build/functionaries.yaml"

var testExpiry = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// testSigner makes a deterministic ed25519 key from a name, so key IDs in
// golden files are stable.
func testSigner(t testing.TB, name string) signing.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("stepseal test key " + name))
	s, err := signing.NewSigner(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testKey(t testing.TB, name string) in_toto.Key {
	t.Helper()
	k, err := signing.InTotoKey(testSigner(t, name).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testKeys returns a deterministic key for every functionary of f.
func testKeys(t testing.TB, f *layout.Functionaries) map[string]in_toto.Key {
	keys := map[string]in_toto.Key{}
	for _, n := range f.Names() {
		keys[n] = testKey(t, n)
	}
	return keys
}

// loadPipeline loads a pipeline and its functionaries; tasks come from
// dir/tasks when that exists.
func loadPipeline(t testing.TB, pipeline, functionaries string) (*tekton.Spec, *layout.Functionaries) {
	t.Helper()
	tasks := filepath.Join(filepath.Dir(pipeline), "tasks")
	if _, err := os.Stat(tasks); err != nil {
		tasks = ""
	}
	spec, err := tekton.Load(context.Background(), pipeline, tasks)
	if err != nil {
		t.Fatal(err)
	}
	f, err := layout.LoadFunctionaries(functionaries)
	if err != nil {
		t.Fatal(err)
	}
	return spec, f
}

// generate builds the layout of a pipeline with deterministic keys.
func generate(t testing.TB, pipeline, functionaries string) (*in_toto.Layout, *layout.Functionaries) {
	t.Helper()
	spec, f := loadPipeline(t, pipeline, functionaries)
	l, err := FromPipeline(spec, f, testKeys(t, f), layout.Options{Expires: testExpiry})
	if err != nil {
		t.Fatal(err)
	}
	return l, f
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

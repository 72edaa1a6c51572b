package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Test keys, generated once per test binary: the layout owner, four
// functionaries (one per key type in use), and mallory, whom no layout
// authorizes.
var (
	keysOnce sync.Once
	testKeys map[string]signing.Signer
)

func key(t testing.TB, name string) signing.Signer {
	t.Helper()
	keysOnce.Do(func() {
		testKeys = map[string]signing.Signer{}
		types := map[string]signing.KeyType{"owner": signing.ED25519, "owner2": signing.ECDSA, "alice": signing.ED25519,
			"bob": signing.ECDSA, "carol": signing.RSA, "dave": signing.ED25519, "mallory": signing.ED25519}
		for n, typ := range types {
			k, err := signing.Generate(typ)
			if err != nil {
				panic(err)
			}
			if testKeys[n], err = signing.NewSigner(k); err != nil {
				panic(err)
			}
		}
	})
	return testKeys[name]
}

func keyID(t testing.TB, name string) string {
	id, err := key(t, name).KeyID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func verifier(t testing.TB, name string) signing.Verifier {
	v, err := signing.NewVerifier(key(t, name).Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func digest(content string) run.DigestSet {
	s := sha256.Sum256([]byte(content))
	return run.DigestSet{"sha256": hex.EncodeToString(s[:])}
}

// chain is a small stepseal-shaped supply chain, editable before build():
// fetch.copy writes the source workspace, test.unit reads it (threshold 2:
// alice and bob), build.compile reads it and writes dist/app.tar.gz.
type chain struct {
	t       testing.TB
	layout  in_toto.Layout
	owners  []string            // keys that sign the layout
	steps   map[string]run.Step // what each step did
	signers map[string][]string // step -> keys that sign its link
	runID   string
	// tamper edits the encoded JSON of links (by step and signer) and of
	// the layout after signing.
	tamperLink   func(step, signer string, signed map[string]any)
	tamperLayout func(signed map[string]any)
	extra        Memory // extra link files
}

const farFuture = "2099-01-01T00:00:00Z"

var (
	srcFiles = map[string]string{"source/main.go": "package main", "source/go.mod": "module x", "source/README.md": "# x"}
	output   = "dist/app.tar.gz"
)

func sourceArtifacts() run.Artifacts {
	a := run.Artifacts{}
	for n, c := range srcFiles {
		a[n] = digest(c)
	}
	return a
}

func newChain(t testing.TB) *chain {
	c := &chain{t: t, owners: []string{"owner"}, runID: "run-1", signers: map[string][]string{
		"fetch.copy": {"carol"}, "test.unit": {"alice", "bob"}, "build.compile": {"dave"},
	}}
	keys := map[string]in_toto.Key{}
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		k, err := signing.InTotoKey(key(t, n).Public())
		if err != nil {
			t.Fatal(err)
		}
		keys[k.KeyID] = k
	}
	step := func(name string, threshold int, keys []string, cmd []string, mat, prod [][]string) in_toto.Step {
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = keyID(t, k)
		}
		return in_toto.Step{Type: "step", PubKeys: ids, ExpectedCommand: cmd, Threshold: threshold,
			SupplyChainItem: in_toto.SupplyChainItem{Name: name, ExpectedMaterials: mat, ExpectedProducts: prod}}
	}
	c.layout = in_toto.Layout{
		Type:    "layout",
		Expires: farFuture, // fixed, so fuzz workers build identical seeds
		Keys:    keys,
		Inspect: []in_toto.Inspection{},
		Steps: []in_toto.Step{
			step("fetch.copy", 1, []string{"carol"}, []string{"cp", "-r", "src", "source"},
				[][]string{{"DISALLOW", "*"}},
				[][]string{{"ALLOW", "source/**"}, {"DISALLOW", "*"}}),
			step("test.unit", 2, []string{"alice", "bob"}, []string{"go", "test", "./..."},
				[][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "test.unit"}, {"DISALLOW", "*"}},
				[][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "fetch.copy"}, {"DISALLOW", "*"}}),
			step("build.compile", 1, []string{"dave"}, []string{"go", "build"},
				[][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "fetch.copy"}, {"DISALLOW", "*"}},
				[][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "fetch.copy"}, {"REQUIRE", output},
					{"ALLOW", "dist/**"}, {"DISALLOW", "*"}}),
		},
	}
	built := sourceArtifacts()
	built[output] = digest("tarball")
	c.steps = map[string]run.Step{
		"fetch.copy":    {Name: "fetch.copy", Command: []string{"cp", "-r", "src", "source"}, Materials: run.Artifacts{}, Products: sourceArtifacts()},
		"test.unit":     {Name: "test.unit", Command: []string{"go", "test", "./..."}, Materials: sourceArtifacts(), Products: sourceArtifacts()},
		"build.compile": {Name: "build.compile", Command: []string{"go", "build"}, Materials: sourceArtifacts(), Products: built},
	}
	return c
}

// signLink returns the encoded link Metablock of step signed by signer.
func (c *chain) signLink(step, signer string, runID string) (string, []byte) {
	return c.signStep(c.steps[step], signer, runID)
}

// signStep returns the encoded link of what s did, signed by signer, and its file name.
func (c *chain) signStep(s run.Step, signer string, runID string) (string, []byte) {
	rec := &run.Record{Pipeline: "demo", RunID: runID}
	l := attest.Link(rec, s)
	step := s.Name
	mb, err := attest.SignLink(context.Background(), l, key(c.t, signer))
	if err != nil {
		c.t.Fatal(err)
	}
	data, err := json.MarshalIndent(mb, "", "  ")
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tamperLink != nil {
		data = edit(c.t, data, func(signed map[string]any) { c.tamperLink(step, signer, signed) })
	}
	return seal.LinkName(step, keyID(c.t, signer)), data
}

// edit decodes a Metablock, lets f change its signed part, and re-encodes
// it without re-signing.
func edit(t testing.TB, data []byte, f func(signed map[string]any)) []byte {
	var mb map[string]any
	if err := json.Unmarshal(data, &mb); err != nil {
		t.Fatal(err)
	}
	f(mb["signed"].(map[string]any))
	out, err := json.MarshalIndent(mb, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// build signs the layout and every link.
func (c *chain) build() ([]byte, Memory) {
	mb := &in_toto.Metablock{Signed: c.layout}
	for _, o := range c.owners {
		if err := signing.SignMetablock(context.Background(), mb, key(c.t, o)); err != nil {
			c.t.Fatal(err)
		}
	}
	layout, err := json.MarshalIndent(mb, "", "  ")
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tamperLayout != nil {
		layout = edit(c.t, layout, c.tamperLayout)
	}
	links := Memory{}
	for step, signers := range c.signers {
		for _, s := range signers {
			name, data := c.signLink(step, s, c.runID)
			links[name] = data
		}
	}
	for n, d := range c.extra {
		links[n] = d
	}
	return layout, links
}

// ours runs this package's verification with the owner key.
func ours(t testing.TB, layout []byte, links LinkSource, opts Options) (*Verdict, error) {
	t.Helper()
	if len(opts.Artifacts) == 0 {
		opts.WithoutArtifactUnsafe = true // as in-toto-golang, which the tests compare with
	}
	v, err := Layout(context.Background(), layout, []signing.Verifier{verifier(t, "owner")}, links, opts)
	if v == nil {
		t.Fatalf("no verdict: %v", err)
	}
	if v.Passed != (err == nil) {
		t.Fatalf("verdict passed=%v but err=%v", v.Passed, err)
	}
	return v, err
}

// inToto runs in-toto-golang's InTotoVerify on the same files, written to a
// temporary directory as `in-toto verify` would read them. A panic inside
// in-toto-golang counts as a rejection.
func inToto(t testing.TB, layout []byte, links Memory) (err error) {
	t.Helper()
	dir := t.TempDir()
	lp := filepath.Join(dir, "root.layout")
	if err := os.WriteFile(lp, layout, 0o600); err != nil {
		t.Fatal(err)
	}
	ld := filepath.Join(dir, "links")
	if err := os.Mkdir(ld, 0o700); err != nil {
		t.Fatal(err)
	}
	for n, d := range links {
		if err := os.WriteFile(filepath.Join(ld, n), d, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return inTotoDir(t, lp, ld, "owner")
}

func inTotoDir(t testing.TB, layoutPath, linkDir string, owners ...string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("in-toto-golang panicked: %v", r)
		}
	}()
	// in-toto-golang prints warnings to stdout; keep test output readable.
	stdout := os.Stdout
	if devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = devnull
		defer func() { os.Stdout = stdout; devnull.Close() }()
	}
	mb, err := in_toto.LoadMetadata(layoutPath)
	if err != nil {
		return err
	}
	keys := map[string]in_toto.Key{}
	for _, o := range owners {
		k, err := signing.InTotoKey(key(t, o).Public())
		if err != nil {
			t.Fatal(err)
		}
		keys[k.KeyID] = k
	}
	_, err = in_toto.InTotoVerify(mb, keys, linkDir, "", map[string]string{}, nil, false)
	return err
}

// failureText joins every failure message, for assertions on wording.
func failureText(v *Verdict) string {
	var b strings.Builder
	for _, f := range v.Failures {
		b.WriteString(f.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

func writeFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

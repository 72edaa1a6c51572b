package generate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
)

// These tests run in-toto-golang's own verifier (InTotoVerify) on generated
// layouts and hand-made, signed links: they show the rule shapes accept an
// honest run and reject what they claim to reject.

// files maps artifact names to their content; digests are computed from it.
type files map[string]string

func (f files) with(kv ...string) files {
	out := maps.Clone(f)
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func (f files) without(names ...string) files {
	out := maps.Clone(f)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

func (f files) hashes() map[string]in_toto.HashObj {
	out := map[string]in_toto.HashObj{}
	for n, c := range f {
		d := sha256.Sum256([]byte(c))
		out[n] = in_toto.HashObj{"sha256": hex.EncodeToString(d[:])}
	}
	return out
}

type stepIO struct{ materials, products files }

// verifyChain signs the layout with an owner key, writes one link per step
// signed by every functionary the layout lists for it, and runs InTotoVerify.
func verifyChain(t *testing.T, l *in_toto.Layout, f *layout.Functionaries, steps map[string]stepIO) error {
	t.Helper()
	ctx := context.Background()
	owner := testSigner(t, "owner")
	mb, err := layout.Sign(ctx, *l, owner)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, s := range l.Steps {
		st, ok := steps[s.Name]
		if !ok {
			continue
		}
		signStepLink(t, f, in_toto.Link{
			Type:        "link",
			Name:        s.Name,
			Materials:   st.materials.hashes(),
			Products:    st.products.hashes(),
			ByProducts:  map[string]any{"return-value": 0},
			Command:     s.ExpectedCommand,
			Environment: map[string]any{},
		}, dir)
	}
	path := filepath.Join(dir, "root.layout")
	if err := layout.Write(path, mb); err != nil {
		t.Fatal(err)
	}
	loaded, err := in_toto.LoadMetadata(path)
	if err != nil {
		t.Fatal(err)
	}
	ownerKey := testKey(t, "owner")
	_, err = in_toto.InTotoVerify(loaded, map[string]in_toto.Key{ownerKey.KeyID: ownerKey}, dir, "", nil, nil, false)
	return err
}

// goBuildRun is an honest run of examples/go-build.
func goBuildRun() map[string]stepIO {
	src := files{"source/go.mod": "module hello", "source/main.go": "package main", "source/main_test.go": "package main // test"}
	built := src.with("dist/hello", "ELF")
	return map[string]stepIO{
		"fetch.copy":    {files{}, src},
		"test.vet":      {src, src},
		"test.unit":     {src, src},
		"build.compile": {src, built},
		"package.tar":   {files{"dist/hello": "ELF"}, files{"dist/hello": "ELF", "dist/app.tar.gz": "tgz"}},
	}
}

func TestInTotoVerifyGoBuild(t *testing.T) {
	l, f := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	if err := verifyChain(t, l, f, goBuildRun()); err != nil {
		t.Fatalf("in-toto rejected an honest run: %v", err)
	}

	src := goBuildRun()["test.unit"].materials
	for _, c := range []struct {
		name string
		edit func(map[string]stepIO)
		// want are substrings of in-toto's error: step, list, artifact, rule.
		want []string
	}{
		{"read-only workspace modified", func(r map[string]stepIO) {
			r["test.unit"] = stepIO{src, src.with("source/main.go", "package main // evil")}
		}, []string{"Step 'test.unit'", "materials [source/main.go]", "DISALLOW *"}},
		{"read-only workspace file created", func(r map[string]stepIO) {
			r["test.unit"] = stepIO{src, src.with("source/evil.go", "package main")}
		}, []string{"Step 'test.unit'", "products [source/evil.go]", "DISALLOW *"}},
		{"read-only workspace file deleted", func(r map[string]stepIO) {
			r["test.unit"] = stepIO{src, src.without("source/main_test.go")}
		}, []string{"Step 'test.unit'", "materials [source/main_test.go]", "DISALLOW *"}},
		{"material differs from the previous step's product", func(r map[string]stepIO) {
			changed := src.with("source/main.go", "package main // swapped between steps")
			r["test.unit"] = stepIO{changed, changed}
		}, []string{"Step 'test.unit'", "products [source/main.go]", "DISALLOW *"}},
		{"writable workspace not empty on first touch", func(r map[string]stepIO) {
			r["fetch.copy"] = stepIO{files{"source/planted.go": "x"}, goBuildRun()["fetch.copy"].products.with("source/planted.go", "x")}
		}, []string{"Step 'fetch.copy'", "materials [source/planted.go]", "DISALLOW *"}},
		{"step writes a workspace it reads only", func(r map[string]stepIO) {
			r["build.compile"] = stepIO{src, goBuildRun()["build.compile"].products.with("source/hello", "ELF")}
		}, []string{"Step 'build.compile'", "products [source/hello]", "DISALLOW *"}},
		{"step writes a workspace it does not bind", func(r map[string]stepIO) {
			r["test.vet"] = stepIO{src, src.with("dist/hello", "ELF")}
		}, []string{"Step 'test.vet'", "products [dist/hello]", "DISALLOW *"}},
		{"declared output missing", func(r map[string]stepIO) {
			r["package.tar"] = stepIO{files{"dist/hello": "ELF"}, files{"dist/hello": "ELF", "dist/app.tgz": "tgz"}}
		}, []string{"REQUIRE 'dist/app.tar.gz'"}},
		{"material not from the previous task", func(r map[string]stepIO) {
			r["package.tar"] = stepIO{files{"dist/hello": "other ELF"}, files{"dist/hello": "other ELF", "dist/app.tar.gz": "tgz"}}
		}, []string{"Step 'package.tar'", "materials [dist/hello]", "DISALLOW *"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := goBuildRun()
			c.edit(r)
			err := verifyChain(t, l, f, r)
			if err == nil {
				t.Fatal("in-toto accepted the run")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("in-toto error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestInTotoVerifyDAG checks the fan-out/join rules: the join may see files
// of either branch, but not a version neither branch produced.
func TestInTotoVerifyDAG(t *testing.T) {
	l, f := generate(t, "testdata/dag/pipeline.yaml", "testdata/dag/functionaries.yaml")
	a := files{"ws/x": "a2"}
	c := a.with("ws/y", "c1")
	d := c.with("ws/x", "d1", "ws/z", "d1")
	honest := func() map[string]stepIO {
		return map[string]stepIO{
			"a.a1":            {files{}, files{"ws/x": ""}},
			"a.a2":            {files{"ws/x": ""}, a},
			"b.b1":            {a, a},
			"c.c1":            {a, c},
			"d.d1":            {c, d},
			"e.e1":            {files{}, files{"other/o": "e1"}},
			"f.f1":            {d, d},
			"g.g1":            {files{}, files{"other/o": "g1"}},
			"plain.unnamed-0": {files{}, files{}},
		}
	}
	if err := verifyChain(t, l, f, honest()); err != nil {
		t.Fatalf("in-toto rejected an honest run: %v", err)
	}
	// The join's material ws/x matches b's product even though c's is the
	// same; ws/y only c produced. A ws/y neither produced is rejected.
	r := honest()
	r["d.d1"] = stepIO{c.with("ws/y", "forged"), d}
	err := verifyChain(t, l, f, r)
	if err == nil || !strings.Contains(err.Error(), "Step 'd.d1'") || !strings.Contains(err.Error(), "materials [ws/y]") {
		t.Errorf("forged join material: %v", err)
	}
	// f reads ws after d: d's version of ws/x, not a's older one, is the
	// reference.
	r = honest()
	r["f.f1"] = stepIO{a, a}
	err = verifyChain(t, l, f, r)
	if err == nil || !strings.Contains(err.Error(), "Step 'f.f1'") || !strings.Contains(err.Error(), "products [ws/x]") {
		t.Errorf("f.f1 with a's workspace although d changed it since: %v", err)
	}
	// d.d1 needs both alice and bob (threshold 2): drop bob's link.
	r = honest()
	if err := verifyChain(t, l, withThresholdOne(t, f), r); err == nil {
		t.Error("d.d1 verified with one of two required links")
	} else if !strings.Contains(err.Error(), "d.d1") {
		t.Errorf("threshold error does not name the step: %v", err)
	}
}

// withThresholdOne returns f with d.* performed by alice alone, so only her
// link is written while the layout still requires two.
func withThresholdOne(t *testing.T, f *layout.Functionaries) *layout.Functionaries {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := layout.ParseFunctionaries([]byte(strings.Replace(string(data), "functionaries: [alice, bob]\n    threshold: 2", "functionaries: [alice]", 1)), f.Path)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

package generate

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/run"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func match(w, step string) []string {
	return []string{"MATCH", w + "/**", "WITH", "PRODUCTS", "FROM", step}
}

var disallow = []string{"DISALLOW", "*"}

func allow(w string) []string { return []string{"ALLOW", w + "/**"} }

type wantStep struct {
	name                string
	materials, products [][]string
}

func checkSteps(t *testing.T, l *in_toto.Layout, want []wantStep) {
	t.Helper()
	if len(l.Steps) != len(want) {
		var names []string
		for _, s := range l.Steps {
			names = append(names, s.Name)
		}
		t.Fatalf("steps %v, want %d steps", names, len(want))
	}
	for i, w := range want {
		s := l.Steps[i]
		if s.Name != w.name {
			t.Errorf("step %d is %s, want %s", i, s.Name, w.name)
			continue
		}
		if !reflect.DeepEqual(s.ExpectedMaterials, w.materials) {
			t.Errorf("%s materials\n got %v\nwant %v", s.Name, s.ExpectedMaterials, w.materials)
		}
		if !reflect.DeepEqual(s.ExpectedProducts, w.products) {
			t.Errorf("%s products\n got %v\nwant %v", s.Name, s.ExpectedProducts, w.products)
		}
	}
}

// TestGoBuildRules pins the rule shapes agreed with pkg/verify on the main
// example, independently of the golden file.
func TestGoBuildRules(t *testing.T) {
	l, f := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	checkSteps(t, l, []wantStep{
		{"fetch.copy", [][]string{disallow}, [][]string{allow("source"), disallow}},
		{"test.vet", [][]string{match("source", "test.vet"), disallow}, [][]string{match("source", "fetch.copy"), disallow}},
		{"test.unit", [][]string{match("source", "test.unit"), disallow}, [][]string{match("source", "test.vet"), disallow}},
		{"build.compile",
			[][]string{match("source", "build.compile"), disallow},
			[][]string{allow("dist"), match("source", "test.unit"), {"CREATE", "results/binary"}, disallow}},
		{"package.tar",
			[][]string{match("dist", "build.compile"), disallow},
			[][]string{{"REQUIRE", "dist/app.tar.gz"}, allow("dist"), {"CREATE", "results/sha256"}, disallow}},
	})
	keys := testKeys(t, f)
	if len(l.Keys) != len(keys) {
		t.Errorf("layout has %d keys, want every functionary's (%d)", len(l.Keys), len(keys))
	}
	for _, s := range l.Steps {
		names, th, err := f.For(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Threshold != th || len(s.PubKeys) != 1 || s.PubKeys[0] != keys[names[0]].KeyID {
			t.Errorf("%s: pubkeys %v threshold %d, want %s's key, %d", s.Name, s.PubKeys, s.Threshold, names[0], th)
		}
	}
	if l.Expires != "2100-01-01T00:00:00Z" || l.Type != "layout" || l.Inspect == nil {
		t.Errorf("expires %q type %q inspect %v", l.Expires, l.Type, l.Inspect)
	}
	// Commands: command+args, or the script as run.ScriptCommand shows it.
	if got := l.Steps[1].ExpectedCommand; !reflect.DeepEqual(got, []string{"go", "vet", "./..."}) {
		t.Errorf("test.vet command %q", got)
	}
	spec, _ := loadPipeline(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	if got, want := l.Steps[0].ExpectedCommand, run.ScriptCommand(spec.Tasks["fetch"].Steps[0].Script); !reflect.DeepEqual(got, want) {
		t.Errorf("fetch.copy command %q, want %q", got, want)
	}
}

func TestDAGRules(t *testing.T) {
	l, f := generate(t, "testdata/dag/pipeline.yaml", "testdata/dag/functionaries.yaml")
	checkSteps(t, l, []wantStep{
		// First touch of ws: it must be empty.
		{"a.a1", [][]string{disallow}, [][]string{allow("ws"), disallow}},
		// Later steps of a task follow the previous step.
		{"a.a2", [][]string{match("ws", "a.a1"), disallow}, [][]string{allow("ws"), disallow}},
		// Read-only: materials are the step's own products, which are a.a2's.
		{"b.b1", [][]string{match("ws", "b.b1"), disallow}, [][]string{match("ws", "a.a2"), disallow}},
		// c runs beside b: b is not its prev.
		{"c.c1", [][]string{match("ws", "a.a2"), disallow}, [][]string{allow("ws"), disallow}},
		// The join sees both branches.
		{"d.d1", [][]string{match("ws", "b.b1"), match("ws", "c.c1"), disallow}, [][]string{allow("ws"), disallow}},
		{"e.e1", [][]string{disallow}, [][]string{allow("other"), disallow}},
		// f depends on a directly and through d: d shadows a.
		{"f.f1", [][]string{match("ws", "f.f1"), disallow}, [][]string{match("ws", "d.d1"), disallow}},
		// g binds other read-only and writable: writable wins. e binds other
		// too but is on another branch, so this is a first touch. g is the
		// last task writing other, so it must produce the output.
		{"g.g1", [][]string{disallow}, [][]string{{"REQUIRE", "other/o"}, allow("other"), disallow}},
		// No workspaces: nothing in, nothing out. Unnamed steps are named
		// the way Tekton names them.
		{"plain.unnamed-0", [][]string{disallow}, [][]string{disallow}},
	})
	keys := testKeys(t, f)
	d := l.Steps[4]
	if d.Threshold != 2 || len(d.PubKeys) != 2 {
		t.Errorf("d.d1: threshold %d of %v, want 2 of alice and bob", d.Threshold, d.PubKeys)
	}
	for _, id := range d.PubKeys {
		if id != keys["alice"].KeyID && id != keys["bob"].KeyID {
			t.Errorf("d.d1: unexpected key %s", id)
		}
	}
	// The stepTemplate's command applies, as Tekton merges it.
	if got := l.Steps[8].ExpectedCommand; !reflect.DeepEqual(got, []string{"echo", "hi"}) {
		t.Errorf("plain.unnamed-0 command %q", got)
	}
}

func TestFromPipelineErrors(t *testing.T) {
	spec, f := loadPipeline(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	keys := testKeys(t, f)
	withFile := func(doc string) *layout.Functionaries {
		t.Helper()
		g, err := layout.ParseFunctionaries([]byte(doc), "f.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	base, err := os.ReadFile(exampleFunctionaries)
	if err != nil {
		t.Fatal(err)
	}
	without := func(name string) map[string]in_toto.Key {
		out := map[string]in_toto.Key{}
		for n, k := range keys {
			if n != name {
				out[n] = k
			}
		}
		return out
	}
	badKey := testKeys(t, f)
	k := badKey["builder"]
	k.KeyID = keys["tester"].KeyID
	badKey["builder"] = k
	sameKey := testKeys(t, f)
	sameKey["packager"] = keys["builder"]
	for _, c := range []struct {
		name string
		f    *layout.Functionaries
		keys map[string]in_toto.Key
		opts layout.Options
		is   error
		want string
	}{
		{"step no entry matches", withFile(strings.Replace(string(base), `"package.*"`, `"pack.*"`, 1)), keys, layout.Options{Expires: testExpiry}, layout.ErrNoFunctionary, "package.tar"},
		{"missing key", f, without("builder"), layout.Options{Expires: testExpiry}, layout.ErrLayout, "build.compile: no public key for functionary builder"},
		{"key ID does not match key", f, badKey, layout.Options{Expires: testExpiry}, layout.ErrLayout, "key of functionary builder"},
		{"output in undeclared workspace", withFile(strings.Replace(string(base), "dist/app.tar.gz", "cache/app.tar.gz", 1)), keys, layout.Options{Expires: testExpiry}, layout.ErrLayout, `no workspace "cache"`},
		{"expired", f, keys, layout.Options{Expires: time.Now().Add(-time.Hour)}, layout.ErrLayout, "in the past"},
		{"threshold over shared key", withFile(strings.Replace(string(base), "functionaries: [packager]", "functionaries: [packager, builder]\n    threshold: 2", 1)), sameKey, layout.Options{Expires: testExpiry}, layout.ErrLayout, "same key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromPipeline(spec, c.f, c.keys, c.opts)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %v naming %q", err, c.is, c.want)
			}
		})
	}

	// An output in a workspace that only read-only tasks bind has no producer.
	ro, g := loadPipeline(t, "testdata/dag/pipeline.yaml", "testdata/dag/functionaries.yaml")
	for _, pt := range ro.Pipeline.Spec.Tasks {
		if pt.Name == "e" || pt.Name == "g" {
			ro.Tasks[pt.Name].Workspaces[len(ro.Tasks[pt.Name].Workspaces)-1].ReadOnly = true
		}
	}
	_, err = FromPipeline(ro, g, testKeys(t, g), layout.Options{Expires: testExpiry})
	if !errors.Is(err, layout.ErrLayout) || !strings.Contains(err.Error(), "no step can produce it") {
		t.Errorf("read-only output workspace: %v", err)
	}
	rejecttest.Is(t, "read-only output workspace", err, reject.ErrMalformed)
}

func TestFromPipelineIgnoresUndeclaredKeys(t *testing.T) {
	spec, f := loadPipeline(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	keys := testKeys(t, f)
	l, err := FromPipeline(spec, f, mergeKeys(keys, "owner", testKey(t, "owner")), layout.Options{Expires: testExpiry})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Keys[testKey(t, "owner").KeyID]; ok || len(l.Keys) != len(keys) {
		t.Errorf("layout keys %d, want only the %d functionaries' keys", len(l.Keys), len(keys))
	}
}

func mergeKeys(keys map[string]in_toto.Key, name string, k in_toto.Key) map[string]in_toto.Key {
	out := map[string]in_toto.Key{name: k}
	for n, v := range keys {
		out[n] = v
	}
	return out
}

func TestDefaultExpiryAndReadme(t *testing.T) {
	spec, f := loadPipeline(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	before := time.Now().UTC().Truncate(time.Second)
	l, err := FromPipeline(spec, f, testKeys(t, f), layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := time.Parse(in_toto.ISO8601DateSchema, l.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if d := exp.Sub(before); d < 720*time.Hour || d > 720*time.Hour+time.Minute {
		t.Errorf("expires %s, want now + 720h", l.Expires)
	}
	if !strings.Contains(l.Readme, `"go-build"`) {
		t.Errorf("readme %q does not name the pipeline", l.Readme)
	}
	l, err = FromPipeline(spec, f, testKeys(t, f), layout.Options{Expires: testExpiry, Readme: "mine"})
	if err != nil || l.Readme != "mine" {
		t.Errorf("readme %q, %v", l.Readme, err)
	}
}

// TestGolden compares the layout of every example pipeline with
// testdata/<example>.layout.json. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("../../../examples/*/functionaries.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, fpath := range dirs {
		dir := filepath.Dir(fpath)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			l, _ := generate(t, filepath.Join(dir, "pipeline.yaml"), fpath)
			got := mustJSON(t, l)
			golden := filepath.Join("testdata", name+".layout.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("layout of %s differs from %s (run go test -update if the change is intended):\n%s", dir, golden, got)
			}
		})
	}
}

// TestGeneratedLayoutLoads checks that in-toto-golang's own loader reads what
// Sign and Write produce, and that Load reads it back unchanged.
func TestGeneratedLayoutLoads(t *testing.T) {
	l, _ := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	mb, err := layout.Sign(context.Background(), *l, testSigner(t, "owner"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "root.layout")
	if err := layout.Write(path, mb); err != nil {
		t.Fatal(err)
	}
	md, err := in_toto.LoadMetadata(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(md.GetPayload(), *l) {
		t.Error("in-toto-golang loaded a different layout")
	}
	back, err := layout.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Signed, *l) || !reflect.DeepEqual(back.Signatures, mb.Signatures) {
		t.Error("Load returned a different layout")
	}
}

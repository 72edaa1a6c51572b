package generate

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/verify"
)

const runsFunctionaries = "../../../test/e2e/testdata/runs/functionaries.yaml"

func matchIn(pattern, step string) []string {
	return []string{"MATCH", pattern, "WITH", "PRODUCTS", "FROM", step}
}

// rulesOf maps each step of l to its materials and products.
func rulesOf(l *in_toto.Layout) map[string][2][][]string {
	out := map[string][2][][]string{}
	for _, s := range l.Steps {
		out[s.Name] = [2][][]string{s.ExpectedMaterials, s.ExpectedProducts}
	}
	return out
}

// Tekton's different-subpaths example: the writers each see only their
// subPath, so the chain is per region: read-all's dir-1 is tied to
// writer-1 although writer-2 ran in between, and read-one (dir-1 only) to
// writer-1 alone.
func TestSubPathRegionRules(t *testing.T) {
	l, _ := generate(t, "../../../test/e2e/testdata/runs/pipelinerun-different-subpaths.yaml", runsFunctionaries)
	got := rulesOf(l)
	want := map[string][2][][]string{
		"writer-1.write": {{disallow}, {{"ALLOW", "ws/dir-1/**"}, disallow}},
		"writer-2.write": {{disallow}, {{"ALLOW", "ws/dir-2/**"}, disallow}},
		"read-all.read-1": {{matchIn("ws/dir-1/**", "writer-1.write"), matchIn("ws/dir-2/**", "writer-2.write"), disallow},
			{allow("ws"), disallow}},
		"read-all.read-2": {{match("ws", "read-all.read-1"), disallow}, {allow("ws"), disallow}},
		"read-one.read":   {{matchIn("ws/dir-1/**", "read-one.read"), disallow}, {matchIn("ws/dir-1/**", "writer-1.write"), disallow}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rules (-want +got):\n%s", d)
	}
}

// A region rewritten by a later task is closed after its MATCH rules when
// the task that wrote the whole workspace is that task's ancestor: a file
// there cannot be passed off as the older task's. Parallel branches leave
// it open: either may have written it.
func TestSubPathRegionShadowing(t *testing.T) {
	l, _ := generate(t, "testdata/subpath-regions.yaml", runsFunctionaries)
	want := [][]string{matchIn("ws/dir-1/**", "w1.s"), {"DISALLOW", "ws/dir-1/**"}, match("ws", "init.s"), disallow}
	if d := cmp.Diff(want, rulesOf(l)["read.s"][1]); d != "" {
		t.Errorf("read.s products (-want +got):\n%s", d)
	}
	if d := cmp.Diff([][]string{matchIn("ws/dir-1/**", "init.s"), disallow}, rulesOf(l)["w1.s"][0]); d != "" {
		t.Errorf("w1.s materials: its region of what init left (-want +got):\n%s", d)
	}
	// Two parallel writers of dir-1 and one of dir-2 after init: each
	// region's MATCH rules together, then its DISALLOW.
	l, _ = generate(t, "testdata/subpath-interleaved.yaml", runsFunctionaries)
	want = [][]string{
		matchIn("ws/dir-1/**", "a.s"), matchIn("ws/dir-1/**", "c.s"), {"DISALLOW", "ws/dir-1/**"},
		matchIn("ws/dir-2/**", "b.s"), {"DISALLOW", "ws/dir-2/**"},
		match("ws", "init.s"), disallow,
	}
	if d := cmp.Diff(want, rulesOf(l)["read.s"][1]); d != "" {
		t.Errorf("interleaved: read.s products (-want +got):\n%s", d)
	}
	l, _ = generate(t, "testdata/subpath-regions-parallel.yaml", runsFunctionaries)
	want = [][]string{matchIn("ws/dir-1/**", "w1.s"), match("ws", "init.s"), disallow}
	if d := cmp.Diff(want, rulesOf(l)["read.s"][1]); d != "" {
		t.Errorf("parallel: read.s products (-want +got):\n%s", d)
	}
}

// verifyBoth writes the links of steps for l (as verifyChain) and verifies
// them with in-toto-golang and with stepseal's verifier.
func verifyBoth(t *testing.T, l *in_toto.Layout, f *layout.Functionaries, steps map[string]stepIO) (inToto, ours error) {
	t.Helper()
	ctx := context.Background()
	owner := testSigner(t, "owner")
	mb, err := layout.Sign(ctx, *l, owner)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, s := range l.Steps {
		st := steps[s.Name]
		signStepLink(t, f, in_toto.Link{
			Type: "link", Name: s.Name, Materials: st.materials.hashes(), Products: st.products.hashes(),
			ByProducts: map[string]any{"return-value": 0}, Command: s.ExpectedCommand, Environment: map[string]any{},
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
	_, inToto = in_toto.InTotoVerify(loaded, map[string]in_toto.Key{ownerKey.KeyID: ownerKey}, dir, "", nil, nil, false)
	data, err := verify.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(owner.Public())
	if err != nil {
		t.Fatal(err)
	}
	_, ours = verify.Layout(ctx, data, []signing.Verifier{v}, verify.Dir(dir), verify.Options{WithoutArtifactUnsafe: true})
	return inToto, ours
}

// A file changed between two steps in a subPath region is rejected by
// both verifiers with the artifact rule that catches it; so is a file of
// a rewritten region put back as the older task left it.
func TestSubPathRegionAttacks(t *testing.T) {
	l, f := generate(t, "../../../test/e2e/testdata/runs/pipelinerun-different-subpaths.yaml", runsFunctionaries)
	both := files{"ws/dir-1/foo": "bar-1\n", "ws/dir-2/foo": "bar-2\n"}
	honest := func() map[string]stepIO {
		return map[string]stepIO{
			"writer-1.write":  {files{}, files{"ws/dir-1/foo": "bar-1\n"}},
			"writer-2.write":  {files{}, files{"ws/dir-2/foo": "bar-2\n"}},
			"read-all.read-1": {both, both},
			"read-all.read-2": {both, both.with("ws/both.txt", "bar-1\nbar-2\n")},
			"read-one.read":   {files{"ws/dir-1/foo": "bar-1\n"}, files{"ws/dir-1/foo": "bar-1\n"}},
		}
	}
	if a, b := verifyBoth(t, l, f, honest()); a != nil || b != nil {
		t.Fatalf("honest run rejected: in-toto-golang %v; stepseal %v", a, b)
	}
	l2, f2 := generate(t, "testdata/subpath-regions.yaml", runsFunctionaries)
	all := files{"ws/dir-1/foo": "0\n", "ws/top": "0\n"}
	regions := func() map[string]stepIO {
		return map[string]stepIO{
			"init.s": {files{}, all},
			"w1.s":   {files{"ws/dir-1/foo": "0\n"}, files{"ws/dir-1/foo": "1\n"}},
			"read.s": {all.with("ws/dir-1/foo", "1\n"), all.with("ws/dir-1/foo", "1\n")},
		}
	}
	if a, b := verifyBoth(t, l2, f2, regions()); a != nil || b != nil {
		t.Fatalf("honest regions run rejected: in-toto-golang %v; stepseal %v", a, b)
	}
	for _, c := range []struct {
		name string
		l    *in_toto.Layout
		f    *layout.Functionaries
		run  map[string]stepIO
		// inToto and ours are substrings of each verifier's error: the
		// step, the artifact list and the rule that rejected it.
		inToto, ours []string
	}{
		{"dir-1 changed between writer-1 and read-all", l, f, func() map[string]stepIO {
			r := honest()
			changed := both.with("ws/dir-1/foo", "evil\n")
			r["read-all.read-1"] = stepIO{changed, changed}
			return r
		}(), []string{"Step 'read-all.read-1'", "materials [ws/dir-1/foo]", "DISALLOW *"},
			[]string{`step "read-all.read-1": material "ws/dir-1/foo" not allowed by rule DISALLOW * (MATCH ws/dir-1/** WITH PRODUCTS FROM writer-1.write did not consume it: sha256 differs)`}},
		{"dir-1 changed between writer-1 and read-one (read-only)", l, f, func() map[string]stepIO {
			r := honest()
			r["read-one.read"] = stepIO{files{"ws/dir-1/foo": "evil\n"}, files{"ws/dir-1/foo": "evil\n"}}
			return r
		}(), []string{"Step 'read-one.read'", "products [ws/dir-1/foo]", "DISALLOW *"},
			[]string{`step "read-one.read": product "ws/dir-1/foo" not allowed by rule DISALLOW * (unchanged since materials; MATCH ws/dir-1/** WITH PRODUCTS FROM writer-1.write did not consume it: sha256 differs)`}},
		{"dir-1 put back as init left it", l2, f2, func() map[string]stepIO {
			r := regions()
			r["read.s"] = stepIO{all, all}
			return r
		}(), []string{"Step 'read.s'", "products [ws/dir-1/foo]", "DISALLOW ws/dir-1/**"},
			[]string{`step "read.s": product "ws/dir-1/foo" not allowed by rule DISALLOW ws/dir-1/** (unchanged since materials; MATCH ws/dir-1/** WITH PRODUCTS FROM w1.s did not consume it: sha256 differs)`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := verifyBoth(t, c.l, c.f, c.run)
			if a == nil || b == nil {
				t.Fatalf("accepted: in-toto-golang %v; stepseal %v", a, b)
			}
			if !errors.Is(b, verify.ErrArtifactRule) {
				t.Errorf("stepseal: %v, want ErrArtifactRule", b)
			}
			for _, w := range c.inToto {
				if !strings.Contains(a.Error(), w) {
					t.Errorf("in-toto-golang error %q does not contain %q", a, w)
				}
			}
			for _, w := range c.ours {
				if !strings.Contains(b.Error(), w) {
					t.Errorf("stepseal error %q does not contain %q", b, w)
				}
			}
		})
	}
}

package layout

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/signing"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
)

const exampleFunctionaries = "../../examples/go-build/functionaries.yaml"

func TestLoadFunctionariesExample(t *testing.T) {
	f, err := LoadFunctionaries(exampleFunctionaries)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Names(), []string{"fetcher", "tester", "builder", "packager"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if f.Spec.Output != "dist/app.tar.gz" || f.ExpiresIn() != 720*time.Hour {
		t.Errorf("output %q expires %v", f.Spec.Output, f.ExpiresIn())
	}
	for step, want := range map[string]string{"fetch.copy": "fetcher", "test.unit": "tester", "build.compile": "builder", "package.tar": "packager"} {
		names, th, err := f.For(step)
		if err != nil || th != 1 || !reflect.DeepEqual(names, []string{want}) {
			t.Errorf("For(%s) = %v, %d, %v; want [%s], 1", step, names, th, err, want)
		}
	}
	_, _, err = f.For("deploy.push")
	if !errors.Is(err, ErrNoFunctionary) || !strings.Contains(err.Error(), "deploy.push") {
		t.Errorf("For(deploy.push) error = %v, want ErrNoFunctionary naming the step", err)
	}
	rejecttest.Is(t, "For(deploy.push)", err, reject.ErrPolicy)
}

const validFunctionaries = `apiVersion: stepseal.dev/v1alpha1
kind: Functionaries
metadata:
  name: t
spec:
  functionaries:
  - name: alice
  - name: bob
  - name: carol
  steps:
  - match: "build.sign"
    functionaries: [carol]
  - match: "build.*"
    functionaries: [alice, bob]
    threshold: 2
  - match: "*"
    functionaries: [alice]
`

func TestForFirstMatchWins(t *testing.T) {
	f, err := ParseFunctionaries([]byte(validFunctionaries), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		step  string
		names []string
		th    int
	}{
		{"build.sign", []string{"carol"}, 1},
		{"build.compile", []string{"alice", "bob"}, 2},
		{"test.unit", []string{"alice"}, 1},
		// '*' matches dots too: path.Match only stops at '/'.
		{"a.b.c", []string{"alice"}, 1},
	} {
		names, th, err := f.For(c.step)
		if err != nil || th != c.th || !reflect.DeepEqual(names, c.names) {
			t.Errorf("For(%s) = %v, %d, %v; want %v, %d", c.step, names, th, err, c.names, c.th)
		}
	}
	if f.ExpiresIn() != DefaultExpiry {
		t.Errorf("default expiry %v", f.ExpiresIn())
	}
	// The returned slice is a copy: callers cannot edit the file's rules.
	names, _, _ := f.For("build.compile")
	names[0] = "mallory"
	if again, _, _ := f.For("build.compile"); again[0] != "alice" {
		t.Error("For returned the rule's own slice")
	}
}

func TestParseFunctionariesErrors(t *testing.T) {
	head := "apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\n"
	fns := "spec:\n  functionaries:\n  - name: a\n  - name: b\n"
	step := "  steps:\n  - match: \"*\"\n    functionaries: [a]\n"
	for _, c := range []struct {
		name, doc, want string
	}{
		{"not yaml", "{", "f.yaml"},
		{"unknown top field", head + "color: red\n" + fns + step, `unknown field "color"`},
		{"unknown spec field", head + fns + step + "  owners: [x]\n", `unknown field "spec.owners"`},
		{"unknown step field", head + fns + step + "    when: always\n", `unknown field "spec.steps[0].when"`},
		{"duplicate field", head + fns + step + "  output: d/x\n  output: d/y\n", `"output" already set`},
		{"api version", "apiVersion: v1\nkind: Functionaries\n" + fns + step, "apiVersion"},
		{"kind", "apiVersion: stepseal.dev/v1alpha1\nkind: Layout\n" + fns + step, "kind"},
		{"no functionaries", head + "spec:\n  functionaries: []\n" + step, "spec.functionaries:"},
		{"empty name", head + "spec:\n  functionaries:\n  - name: \"\"\n" + step, "spec.functionaries[0].name: required"},
		{"name with space", head + "spec:\n  functionaries:\n  - name: \"a b\"\n" + step, "spec.functionaries[0].name"},
		{"duplicate name", head + fns + "  - name: a\n" + step, `spec.functionaries[2].name: "a" is declared twice`},
		{"no steps", head + fns, "spec.steps:"},
		{"empty match", head + fns + "  steps:\n  - functionaries: [a]\n", "spec.steps[0].match: required"},
		{"bad glob", head + fns + "  steps:\n  - match: \"build.[\"\n    functionaries: [a]\n", "spec.steps[0].match"},
		{"no step functionaries", head + fns + "  steps:\n  - match: x\n", "spec.steps[0].functionaries:"},
		{"undeclared", head + fns + "  steps:\n  - match: x\n    functionaries: [a]\n  - match: z\n    functionaries: [a, mallory]\n", `spec.steps[1].functionaries[1]: "mallory" is not declared`},
		{"listed twice", head + fns + "  steps:\n  - match: x\n    functionaries: [a, a]\n", "spec.steps[0].functionaries[1]"},
		{"threshold too high", head + fns + "  steps:\n  - match: x\n    functionaries: [a, b]\n    threshold: 3\n", "spec.steps[0].threshold: 3 exceeds the 2 functionaries"},
		{"negative threshold", head + fns + "  steps:\n  - match: x\n    functionaries: [a]\n    threshold: -1\n", "spec.steps[0].threshold"},
		{"output no path", head + fns + step + "  output: dist\n", "spec.output"},
		{"output absolute", head + fns + step + "  output: /dist/x\n", "spec.output"},
		{"output escapes", head + fns + step + "  output: dist/../x\n", "spec.output"},
		{"output dotdot", head + fns + step + "  output: dist/..\n", "spec.output"},
		{"output unclean", head + fns + step + "  output: dist//x\n", "spec.output"},
		{"output glob", head + fns + step + "  output: dist/*.tar\n", "spec.output"},
		{"expires garbage", head + fns + step + "  expires: soon\n", "spec.expires"},
		{"expires negative", head + fns + step + "  expires: -1h\n", "spec.expires"},
		{"expires zero days", head + fns + step + "  expires: 0d\n", "spec.expires"},
		{"too large", head + fns + step + "# " + strings.Repeat("x", MaxFunctionariesSize) + "\n", "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFunctionaries([]byte(c.doc), "f.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !errors.Is(err, ErrFunctionaries) || !strings.Contains(msg, "f.yaml") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line, ErrFunctionaries, naming f.yaml and %q", msg, c.want)
			}
			rejecttest.Is(t, "ParseFunctionaries", err, reject.ErrMalformed)
		})
	}
}

func TestParseFunctionariesExpiry(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "90m": 90 * time.Minute, "2h30m": 150 * time.Minute} {
		f, err := ParseFunctionaries([]byte(validFunctionaries+"  expires: "+in+"\n"), "f.yaml")
		if err != nil || f.ExpiresIn() != want {
			t.Errorf("expires %s: %v, %v; want %v", in, f, err, want)
		}
	}
}

func TestLoadFunctionariesFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadFunctionaries(filepath.Join(dir, "missing.yaml")); !errors.Is(err, ErrFunctionaries) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFunctionariesSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFunctionaries(big); !errors.Is(err, ErrFunctionaries) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
}

func TestPublicKeys(t *testing.T) {
	dir := t.TempDir()
	s := testSigner(t, "alice")
	pem, err := signing.MarshalPublicKeyPEM(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "alice.pub"), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(validFunctionaries, "- name: alice\n", "- name: alice\n    publicKey: keys/alice.pub\n", 1)
	path := filepath.Join(dir, "functionaries.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFunctionaries(path)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := f.PublicKeys()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s.KeyID()
	if len(keys) != 1 || keys["alice"].KeyID != want {
		t.Errorf("PublicKeys() = %v, want alice with key %s", keys, want)
	}

	// A publicKey that is not a key is reported with the file and field.
	bad := strings.Replace(doc, "- name: bob\n", "- name: bob\n    publicKey: functionaries.yaml\n", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err = LoadFunctionaries(path); err != nil {
		t.Fatal(err)
	}
	_, err = f.PublicKeys()
	if err == nil || !strings.Contains(err.Error(), "spec.functionaries[1].publicKey") || !errors.Is(err, signing.ErrKey) {
		t.Errorf("bad key file: %v", err)
	}
}

func FuzzParseFunctionaries(f *testing.F) {
	if data, err := os.ReadFile(exampleFunctionaries); err == nil {
		f.Add(data)
	}
	f.Add([]byte(validFunctionaries))
	f.Add([]byte(validFunctionaries + "  output: dist/a\n  expires: 3d\n"))
	f.Add([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nspec: {functionaries: [{name: a}], steps: [{match: '[', functionaries: [a]}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fn, err := ParseFunctionaries(data, "f.yaml")
		if err != nil {
			if !errors.Is(err, ErrFunctionaries) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line wrapping ErrFunctionaries", err)
			}
			return
		}
		// What parses is valid: every rule can be evaluated and its
		// threshold met by the functionaries it lists.
		if fn.ExpiresIn() <= 0 {
			t.Fatalf("expiry %v", fn.ExpiresIn())
		}
		for _, r := range fn.Spec.Steps {
			names, th, err := fn.For(r.Match)
			if err != nil && !errors.Is(err, ErrNoFunctionary) {
				t.Fatalf("For(%q): %v", r.Match, err)
			}
			if err == nil && (th < 1 || th > len(names)) {
				t.Fatalf("For(%q): threshold %d of %d", r.Match, th, len(names))
			}
		}
	})
}

// testSigner makes a deterministic ed25519 key from a name.
func testSigner(t testing.TB, name string) signing.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("stepseal test key " + name))
	s, err := signing.NewSigner(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

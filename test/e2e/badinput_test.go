package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input: a one-line error naming what and where, non-zero exit, and
// nothing left in --out.
func TestBadInput(t *testing.T) {
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// An example directory whose pipeline is broken in one way each.
	example := func(name, pipeline string) string {
		d := filepath.Join(tmp, name)
		os.MkdirAll(d, 0o755)
		src, _ := os.ReadFile(filepath.Join(repo, "examples", "go-build", "functionaries.yaml"))
		write(filepath.Join(name, "functionaries.yaml"), string(src))
		write(filepath.Join(name, "pipeline.yaml"), pipeline)
		return d
	}
	goodPipeline, _ := os.ReadFile(filepath.Join(repo, "examples", "go-build", "pipeline.yaml"))
	huge := strings.Repeat("# padding\n", 500_000)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"malformed YAML", []string{"run", example("malformed", "apiVersion: tekton.dev/v1\nkind: Pipeline\nspec: [unclosed\n")}, []string{"pipeline.yaml"}},
		{"unknown field", []string{"run", example("unknown", strings.Replace(string(goodPipeline), "  description:", "  descriptoin:", 1))}, []string{"pipeline.yaml", "descriptoin"}},
		{"huge file", []string{"run", example("huge", huge)}, []string{"pipeline.yaml", "larger than"}},
		{"missing task", []string{"run", example("notasks", string(goodPipeline))}, []string{"fetch-local"}},
		{"unknown param", []string{"run", "examples/go-build", "-p", "nope=1"}, []string{"nope"}},
		{"missing keys dir", []string{"run", "examples/go-build", "--keys", filepath.Join(tmp, "nokeys")}, []string{"owner.key"}},
		{"missing layout key", []string{"verify", "--layout", "x", "--layout-key", filepath.Join(tmp, "none.pub"), "--links", tmp}, []string{"x"}},
		{"bad param syntax", []string{"run", "examples/go-build", "-p", "novalue"}, []string{"novalue"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := c.args
			if args[0] == "run" {
				args = append(args, "--out", out, "-q")
			}
			r := ss(t, args...)
			if r.code == 0 {
				t.Fatalf("accepted:\n%s", r)
			}
			msg := strings.TrimSpace(r.stderr)
			lines := strings.Split(msg, "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "stepseal: ") {
				t.Fatalf("no one-line error:\n%s", r)
			}
			for _, w := range c.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q does not name %q", last, w)
				}
			}
			if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
				t.Errorf("bad input left %d entries in --out", len(entries))
			}
		})
	}
}

func TestOutMustBeEmpty(t *testing.T) {
	out := t.TempDir()
	keep := filepath.Join(out, "precious")
	os.WriteFile(keep, []byte("x"), 0o644)
	r := ss(t, "run", "examples/go-build", "--out", out)
	if r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("run into a non-empty --out:\n%s", r)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("existing content was touched")
	}
}

func TestWrongPasswordCosignKey(t *testing.T) {
	keys := t.TempDir()
	r := run(t, []string{"COSIGN_PASSWORD=right"}, stepseal, "keys", "generate", "--out", keys, "--name", "owner", "--cosign", "--type", "ecdsa")
	if r.code != 0 {
		t.Fatal(r)
	}
	data, _ := os.ReadFile(filepath.Join(keys, "owner.key"))
	if !strings.Contains(string(data), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Fatalf("not a cosign key:\n%s", data)
	}
	out := filepath.Join(t.TempDir(), "layout")
	r = run(t, []string{"COSIGN_PASSWORD=wrong"}, stepseal, "layout", "create", "--pipeline", "examples/go-build/pipeline.yaml", "--tasks", "examples/go-build/tasks",
		"--functionaries", "examples/go-build/functionaries.yaml", "--owner-key", filepath.Join(keys, "owner.key"), "--out", out)
	if r.code == 0 || !strings.Contains(r.stderr, "wrong password") || strings.Contains(r.stderr, "right") {
		t.Fatalf("wrong password:\n%s", r)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a layout was written")
	}
}

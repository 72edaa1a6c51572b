package generate

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/tektoncd/pipeline/pkg/substitution"

	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestExamplesEndToEnd runs each example pipeline on this host and checks the
// verdict its README promises with in-toto-golang's InTotoVerify: go-build
// passes, go-build-tampered is rejected at test.unit for source/main.go.
//
// runPipeline below is a deliberately small executor (param, result and
// workspace substitution, steps as host processes, workspaces hashed before
// and after each step) that only needs to be good enough for the examples; the
// real one is pkg/localrun. It exists so the layouts generated here are
// checked against what the examples' steps actually do.
func TestExamplesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet, go test and go build of the example project")
	}
	for _, tool := range []string{"sh", "go", "tar", "gzip", "sha256sum", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the examples need %s: %v", tool, err)
		}
	}
	for _, c := range []struct {
		example string
		// want is nil for a run that must verify, else substrings of
		// in-toto's rejection: step, artifact, rule.
		want []string
	}{
		{"go-build", nil},
		{"go-build-tampered", []string{"Step 'test.unit'", "materials [source/main.go]", "DISALLOW *"}},
	} {
		t.Run(c.example, func(t *testing.T) {
			dir := filepath.Join("..", "..", "..", "examples", c.example)
			l, f := generate(t, filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "functionaries.yaml"))
			links := runPipeline(t, dir, f)
			ctx := context.Background()
			mb, err := layout.Sign(ctx, *l, testSigner(t, "owner"))
			if err != nil {
				t.Fatal(err)
			}
			owner := testKey(t, "owner")
			_, err = in_toto.InTotoVerify(mb, map[string]in_toto.Key{owner.KeyID: owner}, links, "", nil, nil, false)
			if c.want == nil {
				if err != nil {
					t.Fatalf("in-toto rejected the honest example: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("in-toto accepted the tampered example")
			}
			t.Logf("rejected as expected: %v", err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("rejection %q does not contain %q", err, w)
				}
			}
		})
	}
}

// runPipeline executes the example in dir and returns the directory holding
// one signed link per step.
func runPipeline(t *testing.T, dir string, f *layout.Functionaries) string {
	t.Helper()
	ctx := context.Background()
	spec, _ := loadPipeline(t, filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "functionaries.yaml"))
	absDir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	links := filepath.Join(root, "links")
	if err := os.Mkdir(links, 0o755); err != nil {
		t.Fatal(err)
	}
	pipelineVars := map[string]string{}
	for _, p := range spec.Pipeline.Spec.Params {
		if p.Default != nil {
			pipelineVars["params."+p.Name] = p.Default.StringVal
		}
	}
	for _, w := range spec.Pipeline.Spec.Workspaces {
		if err := os.MkdirAll(filepath.Join(root, "ws", w.Name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	order, err := spec.Order()
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range order {
		ts := spec.Tasks[pt.Name]
		results := filepath.Join(root, "results", pt.Name)
		if err := os.MkdirAll(results, 0o755); err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		for _, p := range ts.Params {
			if p.Default != nil {
				vars["params."+p.Name] = p.Default.StringVal
			}
		}
		for _, p := range pt.Params {
			vars["params."+p.Name] = substitution.ApplyReplacements(p.Value.StringVal, pipelineVars)
		}
		for _, r := range ts.Results {
			vars["results."+r.Name+".path"] = filepath.Join(results, r.Name)
		}
		bindings := spec.Workspaces(pt)
		for _, b := range bindings {
			vars["workspaces."+b.TaskWorkspace+".path"] = filepath.Join(root, "ws", b.PipelineWorkspace)
		}
		hash := func() map[string]in_toto.HashObj {
			out := map[string]in_toto.HashObj{}
			for _, b := range bindings {
				a, err := artifact.Hash(ctx, filepath.Join(root, "ws", b.PipelineWorkspace), b.PipelineWorkspace, artifact.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for n, d := range a {
					out[n] = maps.Clone(in_toto.HashObj(d))
				}
			}
			return out
		}
		for _, s := range ts.Steps {
			name := run.StepName(pt.Name, s.Name)
			var argv []string
			if s.Script != "" {
				argv = run.ScriptCommand(substitution.ApplyReplacements(s.Script, vars))
			} else {
				for _, a := range append(append([]string{}, s.Command...), s.Args...) {
					argv = append(argv, substitution.ApplyReplacements(a, vars))
				}
			}
			materials := hash()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = absDir // relative params such as source-dir resolve here
			if s.WorkingDir != "" {
				cmd.Dir = substitution.ApplyReplacements(s.WorkingDir, vars)
			}
			cmd.Env = os.Environ()
			for _, e := range s.Env {
				cmd.Env = append(cmd.Env, e.Name+"="+substitution.ApplyReplacements(e.Value, vars))
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("step %s: %v\n%s", name, err, out.String())
			}
			signStepLink(t, f, in_toto.Link{
				Type:        "link",
				Name:        name,
				Materials:   materials,
				Products:    hash(),
				ByProducts:  map[string]any{"return-value": 0},
				Command:     argv,
				Environment: map[string]any{},
			}, links)
		}
		for _, r := range ts.Results {
			v, err := os.ReadFile(filepath.Join(results, r.Name))
			if err != nil {
				t.Fatalf("task %s did not write result %s: %v", pt.Name, r.Name, err)
			}
			pipelineVars[fmt.Sprintf("tasks.%s.results.%s", pt.Name, r.Name)] = string(v)
		}
	}
	return links
}

// signStepLink signs a link with the key of every functionary that may
// perform its step and writes one file per signature, as in-toto expects.
func signStepLink(t *testing.T, f *layout.Functionaries, link in_toto.Link, dir string) {
	t.Helper()
	names, _, err := f.For(link.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		signed := &in_toto.Metablock{Signed: link}
		signer := testSigner(t, n)
		if err := signing.SignMetablock(context.Background(), signed, signer); err != nil {
			t.Fatal(err)
		}
		id, _ := signer.KeyID()
		if err := signed.Dump(filepath.Join(dir, fmt.Sprintf(in_toto.LinkNameFormat, link.Name, id))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTamperedExampleDiffersOnlyInTestTask keeps go-build-tampered a copy of
// go-build with one change, the test Task, so its verdict is about that change.
func TestTamperedExampleDiffersOnlyInTestTask(t *testing.T) {
	orig, tampered := filepath.Join("..", "..", "..", "examples", "go-build"), filepath.Join("..", "..", "..", "examples", "go-build-tampered")
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entries, err := os.ReadDir(filepath.Join(orig, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	copies, err := os.ReadDir(filepath.Join(tampered, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(copies) {
		t.Errorf("go-build has %d Task files, go-build-tampered %d", len(entries), len(copies))
	}
	for _, e := range entries {
		a, b := read(filepath.Join(orig, "tasks", e.Name())), read(filepath.Join(tampered, "tasks", e.Name()))
		if same := bytes.Equal(a, b); same != (e.Name() != "go-test.yaml") {
			t.Errorf("tasks/%s: identical=%v, want only go-test.yaml to differ", e.Name(), same)
		}
	}
	fa, err := layout.LoadFunctionaries(filepath.Join(orig, "functionaries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fb, err := layout.LoadFunctionaries(filepath.Join(tampered, "functionaries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fa.Spec, fb.Spec) {
		t.Error("the functionaries files differ")
	}
	pa, _ := loadPipeline(t, filepath.Join(orig, "pipeline.yaml"), filepath.Join(orig, "functionaries.yaml"))
	pb, _ := loadPipeline(t, filepath.Join(tampered, "pipeline.yaml"), filepath.Join(tampered, "functionaries.yaml"))
	if !reflect.DeepEqual(pa.Pipeline.Spec.Tasks, pb.Pipeline.Spec.Tasks) || !reflect.DeepEqual(pa.Pipeline.Spec.Workspaces, pb.Pipeline.Spec.Workspaces) {
		t.Error("the pipelines' tasks or workspaces differ")
	}
	ua, ub := pa.Tasks["test"].Steps[1], pb.Tasks["test"].Steps[1]
	if ua.Name != ub.Name || ub.Script == "" || !strings.Contains(ub.Script, "main.go") {
		t.Error("the tampered test.unit step does not rewrite main.go")
	}
}

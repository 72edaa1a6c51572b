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

// Bad PipelineRun files, each refused through the real binary with the
// error Tekton itself gives (its validation's or reconciler's text), naming
// the run and what is wrong, before anything runs: non-zero exit, one line,
// and no --out directory at all.
func TestBadInputRunFiles(t *testing.T) {
	const task = "      taskSpec:\n        steps: [{name: s, image: busybox, script: 'true'}]\n"
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"missing Task", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: missing-task-run}
spec:
  pipelineSpec:
    tasks:
    - name: build
      taskRef: {name: golang-build}
`, []string{`PipelineRun "missing-task-run"`, `pipeline task "build"`, `Task "golang-build"`}},
		// The reconciler's ValidateParamTypesMatching for a referenced
		// Pipeline; Tekton's Validate of the run for an inline one.
		{"array given for string", `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: clone-pipeline}
spec:
  params: [{name: revision, type: string}]
  tasks:
  - name: clone
    params: [{name: revision, value: $(params.revision)}]
    taskSpec:
      params: [{name: revision}]
      steps: [{name: s, image: busybox, script: 'echo $(params.revision)'}]
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: wrong-type-run}
spec:
  pipelineRef: {name: clone-pipeline}
  params: [{name: revision, value: [main, dev]}]
`, []string{`PipelineRun "wrong-type-run"`, "parameters have inconsistent types", "revision"}},
		{"array given for string, inline", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: wrong-type-run}
spec:
  params: [{name: revision, value: [main, dev]}]
  pipelineSpec:
    params: [{name: revision, type: string}]
    tasks:
    - name: clone
      params: [{name: revision, value: $(params.revision)}]
      taskSpec:
        params: [{name: revision}]
        steps: [{name: s, image: busybox, script: 'echo $(params.revision)'}]
`, []string{`PipelineRun "wrong-type-run"`, `variable type invalid in "$(params.revision)"`}},
		// A result the later task needs that its task never declares (so
		// never writes): the reconciler's check before the first TaskRun.
		{"result never written", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: result-run}
spec:
  pipelineSpec:
    tasks:
    - name: produce
      taskSpec:
        results: [{name: checksum}]
        steps: [{name: s, image: busybox, script: 'echo no digest here'}]
    - name: consume
      params: [{name: digest, value: $(tasks.produce.results.digest)}]
      taskSpec:
        params: [{name: digest}]
        steps: [{name: s, image: busybox, script: 'echo $(params.digest)'}]
`, []string{`PipelineRun "result-run"`, "InvalidTaskResultReference", `pipeline task "consume"`, `"digest" is not a named result returned by pipeline task "produce"`}},
		{"pipeline result never written", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: result-run}
spec:
  pipelineSpec:
    results: [{name: digest, value: $(tasks.produce.results.digest)}]
    tasks:
    - name: produce
` + task, []string{`PipelineRun "result-run"`, "InvalidPipelineResultReference", `invalid pipeline result "digest"`}},
		{"cyclic runAfter", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: cycle-run}
spec:
  pipelineSpec:
    tasks:
    - name: a
      runAfter: [c]
` + task + `    - name: b
      runAfter: [a]
` + task + `    - name: c
      runAfter: [b]
` + task, []string{`PipelineRun "cycle-run"`, "cycle detected", `task "a" depends on "c"`}},
		{"workspace bound to nothing", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: unbound-run}
spec:
  pipelineSpec:
    workspaces: [{name: source}]
    tasks:
    - name: t
      workspaces: [{name: src, workspace: source}]
      taskSpec:
        workspaces: [{name: src}]
        steps: [{name: s, image: busybox, script: 'true'}]
`, []string{`PipelineRun "unbound-run"`, `pipeline requires workspace with name "source" be provided by pipelinerun`}},
		// The layout must say before the run whether a step may fail.
		{"onError from a param", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: onerror-run}
spec:
  params: [{name: CONTINUE, value: continue}]
  pipelineSpec:
    params: [{name: CONTINUE}]
    tasks:
    - name: task1
      params: [{name: CONTINUE, value: $(params.CONTINUE)}]
      taskSpec:
        params: [{name: CONTINUE}]
        steps: [{name: exit-with-1, image: alpine, onError: $(params.CONTINUE), script: 'exit 1'}]
`, []string{`pipeline task "task1" step "exit-with-1"`, `onError "$(params.CONTINUE)"`}},
		{"projected downwardAPI", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: projected-run}
spec:
  workspaces:
  - name: info
    projected:
      sources:
      - downwardAPI:
          items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
  pipelineSpec:
    workspaces: [{name: info}]
    tasks:
    - name: t
      workspaces: [{name: info, workspace: info}]
      taskSpec:
        workspaces: [{name: info}]
        steps: [{name: s, image: busybox, script: 'true'}]
`, []string{`PipelineRun "projected-run"`, `workspace "info"`, "downwardAPI is not supported"}},
		{"csi", `apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: csi-run}
spec:
  workspaces:
  - name: secrets
    csi: {driver: secrets-store.csi.k8s.io, readOnly: true}
  taskSpec:
    workspaces: [{name: secrets}]
    steps: [{name: s, image: busybox, script: 'true'}]
`, []string{`TaskRun "csi-run"`, `workspace "secrets"`, "csi", "not supported"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "run.yaml")
			if err := os.WriteFile(file, []byte(c.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			r := ss(t, "run", file, "--out", out, "--functionaries", filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"), "-q")
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code == 0 || !strings.HasPrefix(last, "stepseal: ") {
				t.Fatalf("no one-line error:\n%s", r)
			}
			for _, w := range append(c.want, "run.yaml") {
				if !strings.Contains(last, w) {
					t.Errorf("error %q does not name %q", last, w)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("bad input created --out (%v)", err)
			}
		})
	}
}

// A result the Task declares but does not write is found missing only
// after its task ran: the consumer fails with Tekton's message, the run
// fails, and what ran stays signed in --out (its link), failing
// verification for the consumer's missing link.
func TestRunFileResultNotWritten(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "run.yaml")
	doc := `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: result-run}
spec:
  pipelineSpec:
    tasks:
    - name: produce
      taskSpec:
        results: [{name: digest}]
        steps: [{name: s, image: busybox, script: 'echo not writing the result'}]
    - name: consume
      params: [{name: digest, value: $(tasks.produce.results.digest)}]
      taskSpec:
        params: [{name: digest}]
        steps: [{name: s, image: busybox, script: 'echo $(params.digest)'}]
`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	r := ss(t, "run", file, "--out", out, "--functionaries", filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"), "-q")
	if r.code == 0 || !strings.Contains(r.stdout, "pipeline task consume: Invalid task result reference: Could not find result with name digest for pipeline task produce") ||
		!strings.Contains(r.stdout, "VERIFICATION FAILED") {
		t.Fatalf("want Tekton's missing-result error and a failed verification:\n%s", r)
	}
	linkFile(t, out, "produce.s")
}

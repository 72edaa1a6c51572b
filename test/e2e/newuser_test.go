package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pipelineDir writes a pipeline (and a functionaries file letting one
// functionary perform every step, with the given extra spec lines) to a new
// directory.
func pipelineDir(t *testing.T, pipeline, functionariesExtra string) string {
	t.Helper()
	dir := t.TempDir()
	f := "apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nmetadata: {name: e2e}\nspec:\n  functionaries: [{name: dev}]\n  steps: [{match: \"*\", functionaries: [dev]}]\n" + functionariesExtra
	for name, content := range map[string]string{"pipeline.yaml": pipeline, "functionaries.yaml": f} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

type runVerdict struct {
	Passed   bool   `json:"passed"`
	RunID    string `json:"runId"`
	Failures []struct {
		Category string `json:"category"`
		Step     string `json:"step"`
		Message  string `json:"message"`
	} `json:"failures"`
}

func readVerdict(t *testing.T, out string) runVerdict {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "verification.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v runVerdict
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A failed step must not verify: the step's own failure, a timeout and an
// allowed failure (onError: continue), each with `stepseal run`, whose last
// line and exit status agree.
func TestRunFailedStepVerdict(t *testing.T) {
	cases := []struct {
		name, steps string
		pass        bool
		category    string
		mention     string
	}{
		{"last step fails", `[{name: ok, image: alpine, script: "true"}, {name: lint, image: alpine, script: "echo bad; exit 3"}]`, false, "step-failed", "return-value 3"},
		{"step times out", `[{name: ok, image: alpine, script: "true"}, {name: slow, image: alpine, timeout: 1s, script: "sleep 30"}]`, false, "step-failed", "timed out"},
		{"timeout despite onError: continue", `[{name: slow, image: alpine, timeout: 1s, onError: continue, script: "sleep 30"}]`, false, "step-failed", "even though the layout lets it fail"},
		{"failure allowed", `[{name: lint, image: alpine, onError: continue, script: "exit 3"}, {name: ok, image: alpine, script: "true"}]`, true, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := pipelineDir(t, "apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: checks}\nspec:\n  tasks:\n  - name: t\n    taskSpec:\n      steps: "+c.steps+"\n", "")
			out := filepath.Join(t.TempDir(), "out")
			r := ss(t, "run", dir, "--out", out)
			last := lastLine(r.stdout)
			passedLine := strings.HasPrefix(last, "VERIFICATION PASSED")
			if (r.code == 0) != c.pass || passedLine != (r.code == 0) {
				t.Fatalf("exit %d with last line %q, want pass=%v and a last line that agrees:\n%s", r.code, last, c.pass, r)
			}
			v := readVerdict(t, out)
			if v.Passed != c.pass {
				t.Fatalf("verification.json passed=%v", v.Passed)
			}
			if c.pass {
				return
			}
			for _, f := range v.Failures {
				if f.Category == c.category && strings.Contains(f.Message, c.mention) {
					return
				}
			}
			t.Fatalf("no %s failure mentioning %q: %+v", c.category, c.mention, v.Failures)
		})
	}
}

// A test-only pipeline (no output declared, no file produced) verifies and
// passes; the provenance says it is about the run's links; verification.json
// names the run; links carry no host path.
func TestRunWithoutOutput(t *testing.T) {
	dir := pipelineDir(t, `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: tests-only}
spec:
  workspaces: [{name: src}]
  tasks:
  - name: unit
    workspaces: [{name: src}]
    taskSpec:
      workspaces: [{name: src, readOnly: true}]
      steps:
      - {name: test, image: alpine, workingDir: $(workspaces.src.path), script: "ls $(workspaces.src.path) > /dev/null"}
`, "")
	out := filepath.Join(t.TempDir(), "out")
	r := ss(t, "run", dir, "--out", out)
	if r.code != 0 || !strings.HasPrefix(lastLine(r.stdout), "VERIFICATION PASSED") || !strings.Contains(r.stdout, "about the run's 1 signed link(s)") {
		t.Fatalf("a pipeline without output:\n%s", r)
	}
	var env struct{ Payload []byte }
	b, _ := os.ReadFile(filepath.Join(out, "provenance.json"))
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env.Payload), `"mediaType":"application/vnd.in-toto.link+json"`) && !strings.Contains(string(env.Payload), "unit.test.") {
		t.Fatalf("provenance subjects are not the links: %s", env.Payload)
	}
	v := readVerdict(t, out)
	if !v.Passed || !strings.HasPrefix(v.RunID, "local-") || !strings.Contains(r.stdout, v.RunID) {
		t.Fatalf("verification.json: passed %v, run %q", v.Passed, v.RunID)
	}
	links, _ := filepath.Glob(filepath.Join(out, "links", "*.link"))
	for _, l := range links {
		b, _ := os.ReadFile(l)
		if bytes.Contains(b, []byte(out)) || bytes.Contains(b, []byte(dir)) {
			t.Fatalf("link %s records a host path (%s or %s):\n%s", l, out, dir, b)
		}
		if !bytes.Contains(b, []byte(`"working-dir": "/workspace/src"`)) {
			t.Fatalf("link %s does not record the Pod path of the workspace:\n%s", l, b)
		}
	}
}

// More than ~880 files in a workspace made `stepseal run` fail storing the
// link (a log entry of 74 224 bytes); 100 000 files now run, are stored and
// verify, and `log verify` audits the store.
func TestRunBigWorkspace(t *testing.T) {
	if testing.Short() {
		t.Skip("100 000 files")
	}
	dir := pipelineDir(t, `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: vendor}
spec:
  workspaces: [{name: src}]
  tasks:
  - name: fetch
    workspaces: [{name: src}]
    taskSpec:
      workspaces: [{name: src}]
      steps:
      - name: vendor
        image: alpine
        script: |
          mkdir -p $(workspaces.src.path)/vendor && cd $(workspaces.src.path)/vendor
          seq 1 100000 | split -l 1 -a 5 - file_
  - name: check
    runAfter: [fetch]
    workspaces: [{name: src}]
    taskSpec:
      workspaces: [{name: src, readOnly: true}]
      steps:
      - {name: count, image: alpine, script: "test $(ls $(workspaces.src.path)/vendor | wc -l) -eq 100000"}
`, "")
	out := filepath.Join(t.TempDir(), "out")
	r := ss(t, "run", dir, "--out", out, "-q")
	if r.code != 0 || !strings.Contains(r.stdout, "VERIFICATION PASSED") {
		t.Fatalf("100 000 files:\n%s", r)
	}
	r = ss(t, "log", "verify", "--log", filepath.Join(out, "store"), "--key", filepath.Join(out, "log.pub"))
	if r.code != 0 || !strings.Contains(r.stdout, "blobs beside the log match them") {
		t.Fatalf("log verify:\n%s", r)
	}
}

// startRun starts `stepseal run` of a pipeline whose step sleeps, and waits
// until the step runs.
func startRun(t *testing.T, out string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	dir := pipelineDir(t, `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: slow}
spec:
  workspaces: [{name: w}]
  tasks:
  - name: t
    workspaces: [{name: w}]
    taskSpec:
      workspaces: [{name: w}]
      steps:
      - {name: a, image: alpine, script: "echo a > $(workspaces.w.path)/a"}
      - {name: b, image: alpine, script: "sleep 60"}
`, "")
	var buf bytes.Buffer
	c := exec.Command(stepseal, "run", dir, "--out", out)
	c.Stdout, c.Stderr = &buf, &buf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), "==> t.b") {
		if time.Now().After(deadline) {
			_ = c.Process.Kill()
			t.Fatalf("step t.b did not start:\n%s", buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c, &buf
}

// Ctrl-C (or SIGTERM) during `stepseal run` leaves no half-written --out and
// exits 130 (143); a run killed outright (SIGKILL) leaves a marked directory
// that the next run replaces without --force.
func TestRunInterrupted(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cmd, buf := startRun(t, out)
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != c.code {
				t.Fatalf("exit %v, want %d:\n%s", err, c.code, buf)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(out)
				t.Fatalf("--out left behind (%v): %v\n%s", err, entries, buf)
			}
			if !strings.Contains(buf.String(), "removed the partial output") {
				t.Fatalf("no word about the output:\n%s", buf)
			}
		})
	}
	t.Run("SIGKILL", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		cmd, buf := startRun(t, out)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// The killed run's step (sleep 60) may still be running: it holds
		// no lock, and the next run replaces the directory.
		if _, err := os.Stat(filepath.Join(out, ".stepseal-incomplete")); err != nil {
			t.Fatalf("killed run left no marker: %v\n%s", err, buf)
		}
		r := ss(t, "run", "examples/go-build", "--out", out, "-q")
		if r.code != 0 || !strings.Contains(r.stdout, "replacing the incomplete output of an interrupted run") {
			t.Fatalf("rerun into a killed run's output:\n%s", r)
		}
		if _, err := os.Stat(filepath.Join(out, ".stepseal-incomplete")); !os.IsNotExist(err) {
			t.Fatalf("a finished run left the marker: %v", err)
		}
	})
}

// `layout create` refuses an existing --out without --force, and a
// non-positive --expires, changing nothing.
func TestLayoutCreateRefusals(t *testing.T) {
	work := t.TempDir()
	keys := filepath.Join(work, "keys")
	genKeys(t, keys, "owner", "dev")
	functionaries := filepath.Join(work, "functionaries.yaml")
	if err := os.WriteFile(functionaries, []byte("apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nmetadata: {name: e2e}\nspec:\n  functionaries: [{name: dev, publicKey: keys/dev.pub}]\n  steps: [{match: \"*\", functionaries: [dev]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "root.layout")
	args := func(extra ...string) []string {
		return append([]string{"layout", "create", "--pipeline", "examples/go-build/pipeline.yaml", "--tasks", "examples/go-build/tasks",
			"--functionaries", functionaries, "--owner-key", filepath.Join(keys, "owner.key"), "--out", out}, extra...)
	}
	for _, e := range []string{"-1h", "0s", "0d", "soon"} {
		if r := ss(t, args("--expires", e)...); r.code == 0 || !strings.Contains(r.stderr, "--expires") {
			t.Fatalf("--expires %s accepted:\n%s", e, r)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("--expires %s wrote a layout", e)
		}
	}
	if r := ss(t, args("--expires", "2d")...); r.code != 0 || !strings.Contains(r.stdout, "expires") {
		t.Fatal(r)
	}
	before, _ := os.ReadFile(out)
	if r := ss(t, args()...); r.code == 0 || !strings.Contains(r.stderr, "exists (use --force") {
		t.Fatalf("overwrote an existing layout:\n%s", r)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Fatal("the existing layout changed")
	}
	if r := ss(t, args("--force")...); r.code != 0 {
		t.Fatal(r)
	}
	if after, _ := os.ReadFile(out); bytes.Equal(before, after) {
		t.Fatal("--force did not replace the layout")
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var (
	stepseal string // path of the built CLI
	repo     string // repository root
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	dir, err := os.MkdirTemp("", "stepseal-e2e-")
	if err != nil {
		panic(err)
	}
	stepseal = filepath.Join(dir, "stepseal")
	// Both binaries, side by side as make build leaves them: stepseal execs
	// stepseal-tekton for run and layout create.
	build := exec.Command("go", "build", "-o", dir+"/", "./images/stepseal", "./images/stepseal-tekton")
	build.Dir = repo
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building stepseal:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run executes a command and returns its exit code and output.
func run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	c := exec.Command(name, args...)
	c.Dir = repo
	c.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return r
}

func ss(t *testing.T, args ...string) result { t.Helper(); return run(t, nil, stepseal, args...) }

// inToto returns the path of in-toto-golang's CLI, pinned by hack/install-test-deps.sh.
func inToto(t *testing.T) string {
	t.Helper()
	for _, p := range []string{filepath.Join(gopath(t), "bin", "in-toto-golang")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("in-toto-golang"); err == nil {
		return p
	}
	t.Fatal("in-toto-golang CLI not found: run `make deps` (hack/install-test-deps.sh) first")
	return ""
}

func gopath(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// inTotoVerify runs `in-toto verify` of in-toto-golang on a run's output.
func inTotoVerify(t *testing.T, dir string, ownerPub ...string) result {
	t.Helper()
	if len(ownerPub) == 0 {
		ownerPub = []string{filepath.Join(dir, "keys", "owner.pub")}
	}
	args := []string{"verify", "-l", filepath.Join(dir, "root.layout"), "-d", filepath.Join(dir, "links")}
	for _, k := range ownerPub {
		args = append(args, "-k", k)
	}
	return run(t, nil, inToto(t), args...)
}

func ssVerify(t *testing.T, dir string, extra ...string) result {
	t.Helper()
	args := append([]string{"verify", "--layout", filepath.Join(dir, "root.layout"), "--layout-key", filepath.Join(dir, "keys", "owner.pub"), "--links", filepath.Join(dir, "links")}, extra...)
	return ss(t, args...)
}

// copyDir copies a run's output so each attack mutates its own copy.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if r := run(t, nil, "cp", "-a", src, dst); r.code != 0 {
		t.Fatal(r)
	}
	return dst
}

func linkFile(t *testing.T, dir, step string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "links", step+".????????.link"))
	if len(m) != 1 {
		t.Fatalf("want one link for %s, found %v", step, m)
	}
	return m[0]
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

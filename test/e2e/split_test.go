package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLeanBinaryLinksNoTekton pins what keeps `stepseal` cheap to start:
// neither Tekton's packages nor the cloud KMS SDKs they pull in are linked;
// only stepseal-tekton has them.
func TestLeanBinaryLinksNoTekton(t *testing.T) {
	list := exec.Command("go", "list", "-deps", "./images/stepseal")
	list.Dir = repo
	out, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, heavy := range []string{"github.com/tektoncd/", "k8s.io/client-go/kubernetes", "github.com/aws/", "github.com/Azure/", "cloud.google.com/", "github.com/hashicorp/vault/"} {
			if strings.HasPrefix(dep, heavy) {
				t.Errorf("./images/stepseal links %s", dep)
			}
		}
	}
}

// TestTektonHandover: `stepseal run` and `stepseal layout create` hand over
// to stepseal-tekton, which prints the same help; without it they fail with
// a message that says what to install, and leave nothing behind.
func TestTektonHandover(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"layout", "create", "--help"}, {"help", "run"}} {
		lean := ss(t, args...)
		full := run(t, nil, filepath.Join(filepath.Dir(stepseal), "stepseal-tekton"), args...)
		if lean.code != 0 || lean.stdout != full.stdout || lean.stderr != full.stderr {
			t.Errorf("stepseal %v differs from stepseal-tekton %v:\n%s\n---\n%s", args, args, lean, full)
		}
	}

	alone := filepath.Join(t.TempDir(), "stepseal")
	data, err := os.ReadFile(stepseal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	env := []string{"PATH=/usr/bin:/bin"}
	for _, args := range [][]string{
		{"run", "examples/go-build", "--out", out},
		{"layout", "create", "--pipeline", "examples/go-build/pipeline.yaml", "--tasks", "examples/go-build/tasks", "--functionaries", "examples/go-build/functionaries.yaml", "--owner-key", "nonexistent.key", "--out", out},
		// Serving in a cluster links client-go's clientset: stepseal-tekton's.
		{"admission", "serve", "--policy-configmap", "stepseal-admission-policy", "--platform", "eu", "--addr", "127.0.0.1:0"},
		// A log on Tessera's AWS driver links the AWS SDK: stepseal-tekton's.
		{"log", "serve", out, "--storage", "aws", "--s3-bucket", "b", "--allow", "x.pub", "--addr", "127.0.0.1:0"},
	} {
		r := run(t, append(env, "STEPSEAL_LOG_MYSQL_DSN=u:pw@tcp(127.0.0.1:1)/db"), alone, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "needs stepseal-tekton") || !strings.Contains(r.stderr, "not found next to "+alone+" or on PATH") {
			t.Errorf("stepseal %v without stepseal-tekton: %s", args, r)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("stepseal %v without stepseal-tekton left %s", args, out)
		}
	}
	// Usage errors are the lean binary's own, found before any handover.
	if r := run(t, env, alone, "run", "examples/go-build"); r.code != 1 || !strings.Contains(r.stderr, "--out is required") {
		t.Errorf("stepseal run without --out: %s", r)
	}
	if r := run(t, env, alone, "log", "serve", out, "--storage", "aws", "--s3-bucket", "b", "--allow", "x.pub"); r.code != 1 || !strings.Contains(r.stderr, "STEPSEAL_LOG_MYSQL_DSN") {
		t.Errorf("stepseal log serve --storage aws without a DSN: %s", r)
	}
	if r := run(t, env, alone, "log", "serve", out, "--s3-bucket", "b", "--allow", "x.pub"); r.code != 1 || !strings.Contains(r.stderr, "are for --storage aws") {
		t.Errorf("stepseal log serve --s3-bucket without --storage aws: %s", r)
	}
}

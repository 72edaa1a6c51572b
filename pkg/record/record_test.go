package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

// recordTree makes the same small project in dir.
func recordTree(t *testing.T, dir string) {
	t.Helper()
	for name, data := range map[string]string{
		"src/main.go":     "package main\n",
		"src/sub/b.txt":   "b\n",
		"src/debug.log":   "noise\n",
		"README":          "readme\n",
		"src/link-to-rdm": "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if name == "src/link-to-rdm" {
			if err := os.Symlink("main.go", p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadLink(t *testing.T, path string, s signing.Signer) in_toto.Link {
	t.Helper()
	md, err := in_toto.LoadMetadata(path)
	if err != nil {
		t.Fatalf("in-toto-golang cannot load %s: %v", path, err)
	}
	key, err := signing.InTotoKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := md.VerifySignature(key); err != nil {
		t.Fatalf("%s: signature does not verify: %v", path, err)
	}
	l, ok := md.GetPayload().(in_toto.Link)
	if !ok {
		t.Fatalf("%s holds %T", path, md.GetPayload())
	}
	return l
}

// TestRecordCommandMatchesInTotoRun runs the same command on two identical
// trees, once through Command and once through in-toto-golang's own
// InTotoRun (what `in-toto run` calls), and compares what they record.
func TestRecordCommandMatchesInTotoRun(t *testing.T) {
	ours, theirs := t.TempDir(), t.TempDir()
	recordTree(t, ours)
	recordTree(t, theirs)
	cmd := []string{"sh", "-c", "mkdir -p out/deep && cp src/main.go out/deep/m.go && echo built"}
	materials := []string{"src", "./README"}
	products := []string{"out/", "src"}
	exclude := []string{"*.log"}

	t.Chdir(theirs)
	mb, err := in_toto.InTotoRun("build", "", materials, products, cmd, in_toto.Key{}, []string{"sha256"}, exclude, nil, false, false, false)
	if err != nil {
		t.Fatal(err)
	}
	want := mb.GetPayload().(in_toto.Link)

	t.Chdir(ours)
	s1, s2 := newSigner(t), newSigner(t)
	var stdout bytes.Buffer
	out := t.TempDir()
	step, err := Command(context.Background(), Options{
		Step: "build", Signers: []signing.Signer{s1, s2}, Materials: materials, Products: products,
		Exclude: exclude, Cmd: cmd, OutDir: out, Stdout: &stdout, RunID: "run-1", Pipeline: "p",
	})
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "built\n" || step.Stdout["sha256"] != sha("built\n") {
		t.Errorf("stdout %q, digest %v", stdout.String(), step.Stdout)
	}
	for _, s := range []signing.Signer{s1, s2} {
		id, _ := s.KeyID()
		l := loadLink(t, filepath.Join(out, seal.LinkName("build", id)), s)
		if diff := cmp.Diff(want.Materials, l.Materials); diff != "" {
			t.Errorf("materials differ from in-toto run's (-in-toto +ours):\n%s", diff)
		}
		if diff := cmp.Diff(want.Products, l.Products); diff != "" {
			t.Errorf("products differ from in-toto run's (-in-toto +ours):\n%s", diff)
		}
		if diff := cmp.Diff(want.Command, l.Command); diff != "" {
			t.Errorf("command (-in-toto +ours):\n%s", diff)
		}
		if l.ByProducts["return-value"] != float64(0) {
			t.Errorf("return-value %v", l.ByProducts["return-value"])
		}
		env := l.Environment
		if env[attest.EnvRunID] != "run-1" || env[attest.EnvPipeline] != "p" {
			t.Errorf("run binding missing from the environment: %v", env)
		}
		if _, ok := env[attest.EnvImageNote]; ok {
			t.Errorf("in-step link carries the local runner's image note: %v", env)
		}
		if _, ok := env[attest.EnvImage]; ok {
			t.Errorf("empty image recorded: %v", env)
		}
	}
	if _, ok := step.Products["out/deep/m.go"]; !ok {
		t.Errorf("products: %v", step.Products.Names())
	}
}

func TestRecordCommandExitStatus(t *testing.T) {
	t.Chdir(t.TempDir())
	s := newSigner(t)
	id, _ := s.KeyID()
	out := t.TempDir()
	var stderr bytes.Buffer
	step, err := Command(context.Background(), Options{
		Step: "fails", Signers: []signing.Signer{s}, Products: []string{"."},
		Cmd: []string{"sh", "-c", "echo oops >&2; touch made; exit 4"}, OutDir: out, Stderr: &stderr,
	})
	var se *StepError
	if !errors.As(err, &se) || se.ExitCode != 4 || se.Step != "fails" {
		t.Fatalf("err = %v, want a StepError with exit code 4", err)
	}
	if step == nil || step.ExitCode != 4 || stderr.String() != "oops\n" {
		t.Fatalf("step %+v, stderr %q", step, stderr.String())
	}
	l := loadLink(t, filepath.Join(out, seal.LinkName("fails", id)), s)
	if l.ByProducts["return-value"] != float64(4) {
		t.Errorf("return-value %v", l.ByProducts["return-value"])
	}
	if _, ok := l.Products["made"]; !ok {
		t.Errorf("products of the failed command not recorded: %v", l.Products)
	}
}

func TestRecordCommandRefusals(t *testing.T) {
	t.Chdir(t.TempDir())
	s := newSigner(t)
	out := t.TempDir()
	_, err := Command(context.Background(), Options{Step: "x", Signers: []signing.Signer{s}, Cmd: []string{"no-such-command-stepseal"}, OutDir: out})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing command: err = %v", err)
	}
	if err := os.Symlink("/etc/passwd", "evil"); err != nil {
		t.Fatal(err)
	}
	_, err = Command(context.Background(), Options{Step: "x", Signers: []signing.Signer{s}, Materials: []string{"."}, Cmd: []string{"true"}, OutDir: out})
	if err == nil {
		t.Error("escaping symlink among the materials: no error")
	}
	if entries, _ := os.ReadDir(out); len(entries) > 0 {
		t.Errorf("refused records left links: %v", entries)
	}
	if _, err := Command(context.Background(), Options{Step: "x", Cmd: []string{"true"}, OutDir: out}); err == nil {
		t.Error("no signer: no error")
	}
	// No command: materials and products only, like in-toto run --no-command.
	os.Remove("evil")
	os.WriteFile("f", []byte("f"), 0o644)
	step, err := Command(context.Background(), Options{Step: "x", Signers: []signing.Signer{s}, Materials: []string{"f"}, OutDir: out})
	if err != nil || step.ExitCode != 0 || len(step.Materials) != 1 {
		t.Errorf("no-command record: %+v, %v", step, err)
	}
}

func newSigner(t *testing.T) signing.Signer {
	t.Helper()
	k, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

package localrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// A task with retries: 1 that fails once is run again from its first step
// in the same workspace; the failed attempt's links are kept under
// attempt names, the last attempt's keep the names the layout verifies;
// $(context.pipelineTask.retries) and $(context.task.retry-count) are
// Tekton's.
func TestRetries(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/retries.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "shared", "attempts.log"))
	if string(b) != "retry-count 0 of 1\nretry-count 1 of 1\n" {
		t.Errorf("attempts.log = %q", b)
	}
	if flaky := findTask(t, rec, "flaky"); flaky.Attempts != 2 || len(flaky.Steps) != 2 || flaky.Steps[1].ExitCode != 0 {
		t.Errorf("flaky: attempts %d, steps %+v; want 2 attempts, the last one's steps", flaky.Attempts, flaky.Steps)
	}
	if after := findTask(t, rec, "after"); after.Attempts != 1 {
		t.Errorf("after: attempts %d, want 1", after.Attempts)
	}
	id, _ := tr.signer.KeyID()
	// The failed attempt's links: kept, distinct, signed for the step.
	for _, c := range []struct {
		step string
		exit float64
	}{{"flaky.log", 0}, {"flaky.try", 3}} {
		name := seal.AttemptLinkName(c.step, id, 1)
		if _, _, ok := seal.ParseLinkName(name); ok {
			t.Errorf("%s is taken for a step link", name)
		}
		if s, _, n, ok := seal.ParseAttemptLinkName(name); !ok || s != c.step || n != 1 {
			t.Errorf("ParseAttemptLinkName(%s) = %s, %d, %v", name, s, n, ok)
		}
		md, err := in_toto.LoadMetadata(filepath.Join(tr.opts.LinkDir, name))
		if err != nil {
			t.Fatalf("link of the failed attempt: %v", err)
		}
		l := md.(*in_toto.Metablock).Signed.(in_toto.Link)
		if l.Name != c.step || l.ByProducts["return-value"] != c.exit {
			t.Errorf("%s: name %s, return-value %v", name, l.Name, l.ByProducts["return-value"])
		}
		last, err := os.ReadFile(filepath.Join(tr.opts.LinkDir, seal.LinkName(c.step, id)))
		first, _ := os.ReadFile(filepath.Join(tr.opts.LinkDir, name))
		if err != nil || string(last) == string(first) {
			t.Errorf("%s: the last attempt's link is missing or the same as the failed one's (%v)", c.step, err)
		}
	}
	// Apart from the attempt links, one link per recorded step.
	entries, _ := os.ReadDir(tr.opts.LinkDir)
	kept := t.TempDir()
	for _, e := range entries {
		if _, _, _, ok := seal.ParseAttemptLinkName(e.Name()); ok {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(tr.opts.LinkDir, e.Name()))
		os.WriteFile(filepath.Join(kept, e.Name()), data, 0o644)
	}
	checkLinks(t, kept, rec, func(string) signing.Signer { return tr.signer })
	if !strings.Contains(tr.out.String(), "flaky: attempt 1 of 2 failed") {
		t.Errorf("progress does not say the attempt failed:\n%s", tr.out)
	}
}

// With retries: 0 the same task fails the run, and nothing is renamed.
func TestNoRetries(t *testing.T) {
	data, err := os.ReadFile("testdata/retries.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte(strings.Replace(string(data), "retries: 1", "retries: 0", 1)), 0o644)
	tr := newTestRun(t)
	spec, err := tekton.Load(context.Background(), file, "")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Run(context.Background(), spec, tr.opts)
	var se *StepError
	if !errors.Is(err, ErrStepFailed) || !errors.As(err, &se) || se.Step != "flaky.try" {
		t.Fatalf("err = %v, want flaky.try's failure", err)
	}
	if flaky := findTask(t, rec, "flaky"); flaky.Attempts != 1 {
		t.Errorf("attempts = %d", flaky.Attempts)
	}
	entries, _ := os.ReadDir(tr.opts.LinkDir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "attempt-") {
			t.Errorf("attempt link without a retry: %s", e.Name())
		}
	}
}

// A TaskRun's retries are its one task's: two failures, then success.
func TestTaskRunRetries(t *testing.T) {
	const tr = `apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: flaky-run}
spec:
  retries: 2
  workspaces: [{name: w, emptyDir: {}}]
  taskSpec:
    workspaces: [{name: w}]
    steps:
    - name: try
      image: busybox
      script: |
        echo x >> $(workspaces.w.path)/count
        test "$(wc -l < $(workspaces.w.path)/count)" -ge 3
`
	file := filepath.Join(t.TempDir(), "tr.yaml")
	if err := os.WriteFile(file, []byte(tr), 0o644); err != nil {
		t.Fatal(err)
	}
	run := newTestRun(t)
	rec, err := Run(context.Background(), load(t, file, ""), run.opts)
	if err != nil {
		t.Fatal(err)
	}
	if task := findTask(t, rec, "flaky-run"); task.Attempts != 3 {
		t.Errorf("attempts = %d, want 3", task.Attempts)
	}
	id, _ := run.signer.KeyID()
	for _, name := range []string{seal.AttemptLinkName("flaky-run.try", id, 1), seal.AttemptLinkName("flaky-run.try", id, 2), seal.LinkName("flaky-run.try", id)} {
		if _, err := os.Stat(filepath.Join(run.opts.LinkDir, name)); err != nil {
			t.Errorf("link %s: %v", name, err)
		}
	}
}

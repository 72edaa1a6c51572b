package embedded_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/embedded"
	"github.com/stepseal/stepseal/pkg/embedded/tektonrun"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
	"github.com/stepseal/stepseal/pkg/verify"
)

const pipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: tiny
spec:
  workspaces:
  - name: src
  - name: dist
  tasks:
  - name: make
    workspaces:
    - {name: src, workspace: src}
    taskSpec:
      workspaces: [{name: src}]
      steps:
      - name: write
        image: busybox
        script: |
          #!/bin/sh
          echo hello > $(workspaces.src.path)/a.txt
  - name: pack
    runAfter: [make]
    workspaces:
    - {name: src, workspace: src}
    - {name: dist, workspace: dist}
    taskSpec:
      workspaces: [{name: src, readOnly: true}, {name: dist}]
      steps:
      - name: tar
        image: busybox
        script: |
          #!/bin/sh
          %s
          cp $(workspaces.src.path)/a.txt $(workspaces.dist.path)/out.txt
`

const functionaries = `apiVersion: stepseal.dev/v1alpha1
kind: Functionaries
metadata: {name: tiny}
spec:
  functionaries: [{name: dev}]
  steps: [{match: "*", functionaries: [dev]}]
  output: dist/out.txt
`

// example writes a two-task pipeline; extra is shell run by the second
// task's step before it copies its input.
func example(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"pipeline.yaml":      strings.Replace(pipeline, "%s", extra, 1),
		"functionaries.yaml": functionaries,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRunPassesAndKeepsEvidence(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	var verdicts int
	rep, err := embedded.Run(context.Background(), embedded.Options{
		Tekton: tektonrun.Tekton{}, Path: example(t, ":"), Out: out, Quiet: true,
		OnVerdict: func(v *verify.Verdict, runErr error) { verdicts++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed() || rep.Verdict == nil || !rep.Verdict.Passed || verdicts != 1 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Links) != 2 || rep.Log == nil || len(rep.Log.Entries) != 4 {
		t.Fatalf("links %v, log %+v: want 2 links and layout+2 links+provenance in the log", rep.Links, rep.Log)
	}
	if last := rep.Log.Entries[len(rep.Log.Entries)-1]; last.Kind != "provenance" {
		t.Fatalf("the provenance must be the last entry stored, got %+v", last)
	}
	for _, f := range []string{"root.layout", "provenance.json", "verification.json", "log.pub"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{"keys/owner.key", "keys/publisher.key", "keys/dev.key", "log-key/log.key"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: private key must be 0600: %v %v", f, st.Mode(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, embedded.IncompleteMarker)); !os.IsNotExist(err) {
		t.Fatal("a finished run left its incomplete marker")
	}
	// A second run into the same directory is refused without Force and
	// changes nothing.
	before, _ := os.ReadFile(filepath.Join(out, "provenance.json"))
	if _, err := embedded.Run(context.Background(), embedded.Options{Tekton: tektonrun.Tekton{}, Path: example(t, ":"), Out: out, Quiet: true}); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("err = %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(out, "provenance.json")); string(after) != string(before) {
		t.Fatal("a refused run changed the earlier output")
	}
}

// A step that modifies a workspace its Task reads only is caught by the
// layout's rules: the run itself succeeds, verification refuses it, naming
// the step and the artifact.
func TestTamperingStepRefused(t *testing.T) {
	rep, err := embedded.Run(context.Background(), embedded.Options{
		Tekton: tektonrun.Tekton{}, Path: example(t, "echo evil > $(workspaces.src.path)/a.txt"), Out: filepath.Join(t.TempDir(), "out"), Quiet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RunErr != nil || rep.VerifyErr == nil || rep.Passed() {
		t.Fatalf("run %v, verify %v", rep.RunErr, rep.VerifyErr)
	}
	if !errors.Is(rep.VerifyErr, verify.ErrArtifactRule) || !errors.Is(rep.VerifyErr, reject.ErrRefused) {
		t.Fatalf("want an artifact-rule refusal, got %v", rep.VerifyErr)
	}
	if msg := rep.VerifyErr.Error(); !strings.Contains(msg, "pack.tar") || !strings.Contains(msg, "a.txt") {
		t.Fatalf("the refusal must name the step and the artifact: %s", msg)
	}
}

// A failing step fails the run; its link is still signed and stored, and
// the verdict says the step failed.
func TestFailedStepFailsRun(t *testing.T) {
	rep, err := embedded.Run(context.Background(), embedded.Options{
		Tekton: tektonrun.Tekton{}, Path: example(t, "exit 3"), Out: filepath.Join(t.TempDir(), "out"), Quiet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RunErr == nil || rep.Passed() || rep.Provenance != "" {
		t.Fatalf("report %+v", rep)
	}
	if !errors.Is(rep.VerifyErr, verify.ErrStepFailed) {
		t.Fatalf("verify err = %v", rep.VerifyErr)
	}
}

// Bad input is refused before the output directory is touched.
func TestBadInputTouchesNothing(t *testing.T) {
	dir := example(t, ":")
	if err := os.WriteFile(filepath.Join(dir, "functionaries.yaml"), []byte(strings.NewReplacer("name: dev}", "name: owner}", "[dev]", "[owner]").Replace(functionaries)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := embedded.Run(context.Background(), embedded.Options{Tekton: tektonrun.Tekton{}, Path: dir, Out: out, Quiet: true}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("bad input created the output directory")
	}
}

// An interrupted run removes its partial output; the leftover of a killed
// run (marker present) is replaced without Force.
func TestInterruptedRunLeavesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := embedded.Run(ctx, embedded.Options{
		Tekton: tektonrun.Tekton{}, Path: example(t, ":"), Out: out, Quiet: true,
		OnVerdict: func(*verify.Verdict, error) { cancel() },
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("an interrupted run left its output")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{embedded.IncompleteMarker, "junk"} {
		if err := os.WriteFile(filepath.Join(out, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := embedded.Run(context.Background(), embedded.Options{Tekton: tektonrun.Tekton{}, Path: example(t, ":"), Out: out, Quiet: true})
	if err != nil || !rep.Passed() {
		t.Fatalf("replacing a killed run's output: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "junk")); !os.IsNotExist(err) {
		t.Fatal("the killed run's leftovers were kept")
	}
}

// A PipelineRun file whose declared output lies in a persistentVolumeClaim
// workspace: the run finds it in the claim's directory, its provenance is
// about it and names the files the run was defined by, and the ignored
// objects are named in one progress line.
func TestRunFileOutputInClaim(t *testing.T) {
	dir := t.TempDir()
	run := `apiVersion: v1
kind: ServiceAccount
metadata: {name: builder}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: claimed}
spec:
  workspaces:
  - {name: src, emptyDir: {}}
  - {name: dist, persistentVolumeClaim: {claimName: artifacts}, subPath: v1}
  pipelineRef: {name: tiny}
`
	for name, content := range map[string]string{
		"run.yaml":           run,
		"pipeline.yaml":      strings.Replace(pipeline, "%s", ":", 1),
		"functionaries.yaml": functionaries,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	var progress strings.Builder
	rep, err := embedded.Run(context.Background(), embedded.Options{
		Tekton: tektonrun.Tekton{}, Path: filepath.Join(dir, "run.yaml"), Out: out, Quiet: true, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed() {
		t.Fatalf("report %+v\n%s", rep, progress.String())
	}
	if want := filepath.Join(out, "work", "claims", "artifacts", "v1", "out.txt"); rep.Output != want {
		t.Errorf("output %s, want %s", rep.Output, want)
	}
	if n := strings.Count(progress.String(), "ignoring 1 object(s) a local run has no use for: ServiceAccount/builder"); n != 1 {
		t.Errorf("want one line naming the ServiceAccount, got %d:\n%s", n, progress.String())
	}
	prov, err := os.ReadFile(filepath.Join(out, "provenance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Payload []byte }
	if err := json.Unmarshal(prov, &env); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"run.yaml", "pipeline.yaml"} {
		if !strings.Contains(string(env.Payload), filepath.ToSlash(filepath.Join(dir, f))) {
			t.Errorf("provenance does not name %s:\n%s", f, env.Payload)
		}
	}
}

// A task that fails once and is retried: its failed attempt's link is
// stored in the run's log (kind link, the run's ID, the attempt's products
// as subjects) and named in the provenance beside the other links, while
// verification checks the last attempt.
func TestRunStoresAttemptLinks(t *testing.T) {
	dir := t.TempDir()
	retried := strings.Replace(pipeline, "  - name: pack\n    runAfter: [make]\n", "  - name: pack\n    runAfter: [make]\n    retries: 1\n", 1)
	retried = strings.Replace(retried, "%s", `if [ ! -e $(workspaces.dist.path)/tried ]; then echo once > $(workspaces.dist.path)/tried; exit 1; fi`, 1)
	for name, content := range map[string]string{"pipeline.yaml": retried, "functionaries.yaml": functionaries} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	var progress strings.Builder
	rep, err := embedded.Run(context.Background(), embedded.Options{Tekton: tektonrun.Tekton{}, Path: dir, Out: out, Quiet: true, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed() || len(rep.AttemptLinks) != 1 || !strings.HasPrefix(rep.AttemptLinks[0], "pack.tar.") || !strings.HasSuffix(rep.AttemptLinks[0], ".attempt-1.link") {
		t.Fatalf("report %+v\n%s", rep, progress.String())
	}
	attempt := rep.AttemptLinks[0]
	if len(rep.Links) != 2 || len(rep.Log.Entries) != 5 {
		t.Fatalf("links %v, log %+v: want 2 links, and layout, 3 links and provenance in the log", rep.Links, rep.Log.Entries)
	}
	logged := false
	for _, e := range rep.Log.Entries {
		logged = logged || (e.Kind == "link" && e.Name == attempt)
	}
	if !logged {
		t.Errorf("the attempt link is not in the log: %+v", rep.Log.Entries)
	}
	key, err := tlog.ReadKey(filepath.Join(out, "log-key", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := tlogstore.Open(context.Background(), filepath.Join(out, "store"), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	es, err := st.List(context.Background(), store.Filter{Kind: store.KindLink, RunID: rep.RunID})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range es {
		if e.Name == attempt {
			subjects = e.Subjects
		}
	}
	// The failed attempt produced dist/tried (and src/a.txt, unchanged).
	if len(subjects) != 2 {
		t.Errorf("attempt link subjects %v, want its two products", subjects)
	}
	prov, err := os.ReadFile(filepath.Join(out, "provenance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Payload []byte }
	if err := json.Unmarshal(prov, &env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env.Payload), `"name":"`+attempt+`"`) {
		t.Errorf("provenance does not name %s:\n%s", attempt, env.Payload)
	}
}

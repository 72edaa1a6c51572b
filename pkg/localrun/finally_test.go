package localrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// finallyRun runs testdata/finally.yaml with params and returns the record,
// the error and the content of each file of its workspace.
func finallyRun(t *testing.T, params map[string]string) (*testRun, *run.Record, map[string]string, []string, error) {
	t.Helper()
	tr := newTestRun(t)
	tr.opts.Params = params
	rec, err := Run(context.Background(), load(t, "testdata/finally.yaml", ""), tr.opts)
	if rec == nil {
		t.Fatalf("no record: %v", err)
	}
	files := map[string]string{}
	for _, f := range []string{"out.txt", "package.txt", "report.txt", "stamp.txt", "alert.txt"} {
		if b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "w", f)); err == nil {
			files[f] = strings.TrimSpace(string(b))
		}
	}
	var skips []string
	for _, tk := range rec.Tasks {
		if tk.Skipped {
			skips = append(skips, tk.PipelineTask+": "+tk.SkipReason)
		}
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
	return tr, rec, files, skips, err
}

// After a successful DAG the finally tasks run after every DAG task, see
// Succeeded, consume a DAG task's result; a finally when on $(tasks.status)
// skips the failure handler.
func TestFinallyAfterSuccess(t *testing.T) {
	_, rec, files, skips, err := finallyRun(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"out.txt":     "built",
		"package.txt": "built",
		"report.txt":  "all=Succeeded build=Succeeded/Succeeded later=Succeeded guarded=Succeeded",
		"stamp.txt":   "version 1.0",
	}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("workspace (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"summary": "Succeeded", "version": "1.0"}, rec.Results); diff != "" {
		t.Errorf("pipeline results, one from a finally task (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`on-failure: When Expressions evaluated to false ("Succeeded" in ["Failed"])`}, skips); diff != "" {
		t.Errorf("skipped tasks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"build.compile", "later.package", "guarded.noop", "report.write", "consume.stamp"}, stepNames(rec)); diff != "" {
		t.Errorf("steps in order (-want +got):\n%s", diff)
	}
}

// A DAG task skipped by its when expression makes $(tasks.status)
// Completed and its own status None.
func TestFinallyAfterSkip(t *testing.T) {
	_, rec, files, _, err := finallyRun(t, map[string]string{"guard": "off"})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Results["summary"]; got != "Completed" {
		t.Errorf("pipeline result from the finally task = %q, want Completed", got)
	}
	if got, want := files["report.txt"], "all=Completed build=Succeeded/Succeeded later=Succeeded guarded=None"; got != want {
		t.Errorf("report.txt = %q, want %q", got, want)
	}
}

// A failed task (no onError: continue) stops the DAG, yet every finally task
// runs, its link written; one consuming the failed task's result is skipped
// as Tekton skips it, and the run fails with the task's error.
func TestFinallyAfterFailure(t *testing.T) {
	tr, rec, files, skips, err := finallyRun(t, map[string]string{"fail": "yes"})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "build.compile" || se.ExitCode != 4 {
		t.Fatalf("err = %v, want build.compile's failure", err)
	}
	want := map[string]string{
		"out.txt":    "built",
		"report.txt": "all=Failed build=Failed/Failed later=None guarded=None",
		"alert.txt":  "the pipeline failed",
	}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("workspace (-want +got):\n%s", diff)
	}
	wantSkips := []string{"later: PipelineRun was stopping", "guarded: PipelineRun was stopping", "consume: Results were missing"}
	if len(skips) != len(wantSkips) {
		t.Fatalf("skipped tasks %q, want %q", skips, wantSkips)
	}
	for i := range skips {
		if !strings.HasPrefix(skips[i], wantSkips[i]) {
			t.Errorf("skip %d = %q, want %q...", i, skips[i], wantSkips[i])
		}
	}
	if diff := cmp.Diff([]string{"build.compile", "report.write", "on-failure.alert"}, stepNames(rec)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if !strings.Contains(tr.out.String(), "pipeline finally failed") {
		t.Errorf("the run is not reported failed:\n%s", tr.out)
	}
}

// A failed finally task fails the run; the other finally tasks still run.
func TestFinallyTaskFails(t *testing.T) {
	_, rec, files, _, err := finallyRun(t, map[string]string{"finally-fail": "yes"})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "report.write" || se.ExitCode != 5 {
		t.Fatalf("err = %v, want report.write's failure", err)
	}
	if files["stamp.txt"] != "version 1.0" {
		t.Errorf("the finally task after the failed one did not run: %v", files)
	}
	if diff := cmp.Diff([]string{"build.compile", "later.package", "guarded.noop", "report.write", "consume.stamp"}, stepNames(rec)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}

// timeouts.tasks ends the DAG but not the finally tasks, which run and are
// bounded by timeouts.finally.
func TestFinallyTimeouts(t *testing.T) {
	tr := newTestRun(t)
	start := time.Now()
	rec, err := Run(context.Background(), load(t, "testdata/run-finally-timeout.yaml", ""), tr.opts)
	var se *StepError
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &se) || se.Step != "slow.sleep" {
		t.Fatalf("err = %v, want timeouts.tasks in slow.sleep", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timeouts of 2s took %s", d)
	}
	b, _ := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "w", "report.txt"))
	if string(b) != "Failed Failed\n" {
		t.Errorf("report.txt = %q: the finally task did not run after timeouts.tasks", b)
	}
	steps := rec.AllSteps()
	if len(steps) != 3 || steps[2].Name != "slow-cleanup.sleep" || !steps[2].TimedOut {
		t.Errorf("steps = %+v, want slow-cleanup.sleep killed by timeouts.finally", steps)
	}
	if !strings.Contains(tr.out.String(), "finally task slow-cleanup failed: step slow-cleanup.sleep timed out") {
		t.Errorf("the progress output does not report the finally task's timeout:\n%s", tr.out)
	}
}

package localrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
)

// pvcName is the name Tekton gives the PersistentVolumeClaim of a
// volumeClaimTemplate binding of workspace ws owned by the object with
// uid: "<template name or pvc>-<sha256(ws+uid)[:10]>".
func pvcName(prefix, ws, uid string) string {
	h := sha256.Sum256([]byte(ws + uid))
	return prefix + "-" + hex.EncodeToString(h[:])[:10]
}

// An inline pipelineSpec that declares no workspace and whose tasks bind
// none: Tekton propagates the run's workspaces the inline taskSpecs use,
// and $(workspaces.<w>.claim) of a volumeClaimTemplate is the claim Tekton
// creates, owned by the PipelineRun (whose UID is the run ID).
func TestRunFilePropagatedWorkspaces(t *testing.T) {
	tr := newTestRun(t)
	spec := load(t, "testdata/run-propagated.yaml", "")
	rec, err := Run(context.Background(), spec, tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "named", "copy"))
	if err != nil || string(b) != "hello\n" {
		t.Errorf("copy = %q, %v", b, err)
	}
	want := pvcName("pvc", "tmpl", tr.opts.RunID) + " " + pvcName("cache", "named", tr.opts.RunID) + " []\n"
	b, err = os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "tmpl", "claims"))
	if err != nil || string(b) != want {
		t.Errorf("claims = %q, %v; want %q", b, err, want)
	}
	if _, ok := findStep(t, rec, "read.s").Materials["shared/msg"]; !ok {
		t.Errorf("read.s materials = %v: want the propagated workspace hashed", findStep(t, rec, "read.s").Materials)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
}

// A TaskRun's inline taskSpec may use a workspace the TaskRun binds without
// declaring it; its claim is owned by the TaskRun.
func TestRunFilePropagatedTaskRun(t *testing.T) {
	tr := newTestRun(t)
	if _, err := Run(context.Background(), load(t, "testdata/run-propagated-taskrun.yaml", ""), tr.opts); err != nil {
		t.Fatal(err)
	}
	want := pvcName("pvc", "w", tr.opts.RunID+"-prop-tr") + "\n"
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "w", "claim"))
	if err != nil || string(b) != want {
		t.Errorf("claim = %q, %v; want %q", b, err, want)
	}
}

// A workspace an inline taskSpec uses that the run does not bind is
// Tekton's error, naming the task and the workspace, before any step runs.
func TestRunFilePropagatedUnbound(t *testing.T) {
	tr := newTestRun(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "run.yaml")
	data, err := os.ReadFile("testdata/run-propagated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(strings.Replace(string(data), "$(workspaces.shared.path)/msg > ", "$(workspaces.other.path)/msg > ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), load(t, f, ""), tr.opts)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `expected workspace "other" to be provided by pipelinerun for pipeline task "read"`) {
		t.Fatalf("err = %v", err)
	}
	if entries, _ := os.ReadDir(tr.opts.LinkDir); len(entries) != 0 {
		t.Errorf("links written: %v", entries)
	}
}

package localrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/tekton"
)

// Each feature the local runner refuses is refused before any step runs,
// in one line naming the feature and the pipeline task (and step), with
// nothing signed. (Refusals of run files — resolvers, bundles, podTemplate,
// taskRunSpecs, projected and csi sources, … — are pkg/tekton's
// TestRunRefusals.)
func TestRefusals(t *testing.T) {
	const pipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: refused}
spec:
  workspaces: [{name: w}]
  tasks:
  - name: first
    taskSpec:
      steps: [{name: ok, image: busybox, script: 'touch "$(workspaces.w.path)/ran"'}]
    workspaces: [{name: w, workspace: w}]
  - name: build
    runAfter: [first]
    workspaces: [{name: w, workspace: w}]
    taskSpec:
      workspaces: [{name: w}]
      steps:
      - name: compile
        image: busybox
        script: 'true'
`
	// CEL is refused by Tekton's own validation (its feature flag is off),
	// which names the field's path, not the task.
	cases := []struct {
		name     string
		old, new string // an edit of pipeline
		want     []string
	}{
		{"sidecar", "      steps:\n      - name: compile", "      sidecars: [{name: db, image: postgres}]\n      steps:\n      - name: compile", []string{"pipeline task build", "sidecars"}},
		{"volumes", "      steps:\n      - name: compile", "      volumes: [{name: v, emptyDir: {}}]\n      steps:\n      - name: compile", []string{"pipeline task build", "volumes"}},
		{"volumeMounts", "        script: 'true'\n", "        script: 'true'\n        volumeMounts: [{name: v, mountPath: /v}]\n", []string{"pipeline task build step compile", "volumeMounts"}},
		{"per-step workspaces", "        script: 'true'\n", "        script: 'true'\n        workspaces: [{name: w}]\n", []string{"pipeline task build step compile", "per-step workspaces"}},
		{"envFrom", "        script: 'true'\n", "        script: 'true'\n        envFrom: [{configMapRef: {name: cm}}]\n", []string{"pipeline task build step compile", "envFrom"}},
		{"env valueFrom", "        script: 'true'\n", "        script: 'true'\n        env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n", []string{"pipeline task build step compile", "env TOKEN", "valueFrom"}},
		{"CEL step when", "        script: 'true'\n", "        script: 'true'\n        when: [{cel: \"'a' == 'a'\"}]\n", []string{`Pipeline "refused"`, "CEL", "tasks[1].taskSpec.steps[0].when[0]"}},
		{"CEL task when", "    runAfter: [first]\n", "    runAfter: [first]\n    when: [{cel: \"'a' == 'a'\"}]\n", []string{`Pipeline "refused"`, "CEL", "tasks[1].when[0]"}},
		{"pipeline task onError", "    runAfter: [first]\n", "    runAfter: [first]\n    onError: continue\n", []string{"pipeline task build", "onError: continue on a pipeline task"}},
		{"matrix", "    runAfter: [first]\n", "    runAfter: [first]\n    matrix: {params: [{name: os, value: [linux, darwin]}]}\n", []string{"pipeline task build", "matrix"}},
		{"matrix in finally", "  - name: build\n", "  - name: build\n", []string{"pipeline task report", "matrix"}},
		{"undeclared result", "    runAfter: [first]\n", "    runAfter: [first]\n    params: [{name: d, value: $(tasks.first.results.digest)}]\n", []string{"InvalidTaskResultReference", `pipeline task "build"`, `"digest" is not a named result returned by pipeline task "first"`}},
		{"unresolvable variable", "        script: 'true'\n", "        script: 'echo $(credentials.path)'\n", []string{"pipeline task build step compile", "cannot resolve $(credentials.path)"}},
		// Tekton spells a step's exit code path $(steps.step-<name>.exitCode.path)
		// and leaves any other spelling unsubstituted.
		{"exitCode path without step-", "        script: 'true'\n", "        script: 'cat $(steps.compile.exitCode.path)'\n", []string{"pipeline task build step compile", "cannot resolve $(steps.compile.exitCode.path)"}},
		{"no command", "        script: 'true'\n", "        args: [x]\n", []string{"pipeline task build step compile", "no command or script"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(pipeline, c.old, c.new, 1)
			if doc == pipeline && c.name != "matrix in finally" {
				t.Fatal("the edit does not apply")
			}
			if c.name == "matrix in finally" {
				doc += "  finally:\n  - name: report\n    matrix: {params: [{name: os, value: [linux, darwin]}]}\n    taskSpec:\n      params: [{name: os}]\n      steps: [{name: s, image: busybox, script: 'echo $(params.os)'}]\n"
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "pipeline.yaml")
			if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			spec, err := tekton.Load(context.Background(), file, "")
			if err == nil {
				tr := newTestRun(t)
				_, err = Run(context.Background(), spec, tr.opts)
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				if entries, _ := os.ReadDir(tr.opts.LinkDir); len(entries) > 0 {
					t.Errorf("links written before the refusal: %v", entries)
				}
				if _, serr := os.Stat(filepath.Join(tr.opts.WorkDir, "workspaces", "w", "ran")); serr == nil {
					t.Error("a step ran before the refusal")
				}
			} else if !errors.Is(err, tekton.ErrInvalid) {
				t.Fatalf("load: err = %v, want tekton.ErrInvalid", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("not one line: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not name %q", msg, w)
				}
			}
		})
	}
}

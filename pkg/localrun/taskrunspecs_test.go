package localrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The run's podTemplate env reaches the steps after their own env, as
// Tekton appends it; a taskRunSpec's timeout replaces the pipeline task's.
func TestRunFileTaskRunSpecs(t *testing.T) {
	tr := newTestRun(t)
	start := time.Now()
	rec, err := Run(context.Background(), load(t, "testdata/run-taskrunspecs.yaml", ""), tr.opts)
	var se *StepError
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &se) || se.Step != "slow.sleep" {
		t.Fatalf("err = %v, want slow.sleep killed by its taskRunSpec's timeout", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("taskRunSpecs timeout 1s took %s", d)
	}
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "out", "env.txt"))
	if err != nil || string(b) != "template|spec for tekton|by the podTemplate\n" {
		t.Errorf("env.txt = %q, %v", b, err)
	}
	st := findStep(t, rec, "write.env")
	if st.Env["FROM_SPEC"] != "spec for tekton" || st.Env["FROM_TEMPLATE"] != "template" {
		t.Errorf("recorded env = %v", st.Env)
	}
}

package cmd

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/record"
)

// TestRecordStartStop runs the subcommands as the StepActions call them:
// flags, "--", the paths, "--exclude", the patterns. Stdout is the one
// measurement line, the result file its sha256.
func TestRecordStartStop(t *testing.T) {
	ws := t.TempDir()
	for name, body := range map[string]string{"a.txt": "a", "b.log": "b", "--exclude": "named like the marker"} {
		if err := os.WriteFile(filepath.Join(ws, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := filepath.Join(t.TempDir(), "result")
	out := mustCLI(t, "record", "start", "--step=build", "--result-file="+res, "--taskrun=tr", "--taskrun-uid=u1", "--", "source="+ws, "--exclude", "*.log")
	digest, _ := os.ReadFile(res)
	line := strings.TrimSuffix(out, "\n")
	d := sha256.Sum256([]byte(line))
	if strings.Count(out, "\n") != 1 || hex.EncodeToString(d[:]) != string(digest) {
		t.Fatalf("stdout %q, result %q", out, digest)
	}
	m, err := record.ParseMeasurement([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 2 || m.Artifacts["source/a.txt"] == nil || m.Artifacts["source/--exclude"] == nil || m.Kind != record.KindMaterials {
		t.Errorf("measurement %+v", m)
	}

	ec := filepath.Join(t.TempDir(), "exitCode")
	if err := os.WriteFile(ec, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, "record", "stop", "--step=build", "--exit-code-file="+ec, "--result-file="+res, "--taskrun-uid=u1", "--", "source="+ws, "--exclude")
	if m, err = record.ParseMeasurement([]byte(strings.TrimSpace(out))); err != nil || *m.ExitCode != 1 || len(m.Artifacts) != 3 {
		t.Fatalf("stop: %+v, %v", m, err)
	}

	// Param values are data: refused, nothing written.
	for _, args := range [][]string{
		{"--step=; rm -rf /", "--", "source=" + ws},
		{"--step=$(x)", "--", "source=" + ws},
		{"--step=build", "--", "; rm -rf /"},
		{"--step=build", "--", "--exclude", "*"},
	} {
		res := filepath.Join(t.TempDir(), "result")
		out, err := runCLI(t, append([]string{"record", "start", "--result-file=" + res, "--taskrun-uid=u"}, args...)...)
		if err == nil {
			t.Errorf("%q: accepted: %s", args, out)
		}
		if _, err := os.Stat(res); err == nil {
			t.Errorf("%q: refused but wrote a result", args)
		}
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyGate: `stepseal verify` as a gate in a pipeline, against a
// real served log. Started before the test task's links are logged, it
// waits and then passes; a wait that ends with a step missing fails,
// naming it, in the results as well; --strict=false exits 0 with VERDICT
// FAILED; --steps verifies only the tasks before the gate; links of
// another run are refused; a log that cannot be reached is ERROR ("could
// not check"), not FAILED; parameter values a shell would interpret are
// data.
func TestVerifyGate(t *testing.T) {
	out := goBuild(t)
	url, logPub := serveLog(t, out)
	links, _ := filepath.Glob(filepath.Join(out, "links", "*.link"))
	var early, test []string
	for _, l := range links {
		if strings.HasPrefix(filepath.Base(l), "test.") {
			test = append(test, l)
		} else {
			early = append(early, l)
		}
	}
	add := func(files ...string) {
		t.Helper()
		if r := ss(t, append([]string{"log", "add", "--server", url, "--log-key", logPub}, files...)...); r.code != 0 {
			t.Fatal(r)
		}
	}
	add(early...)
	runID := readJSON(t, links[0])["signed"].(map[string]any)["environment"].(map[string]any)["stepseal.dev/run-id"].(string)
	res := t.TempDir()
	verdictFile, summaryFile := filepath.Join(res, "VERDICT"), filepath.Join(res, "SUMMARY")
	gate := func(extra ...string) []string {
		return append([]string{"verify", "--layout", filepath.Join(out, "root.layout"), "--layout-key", filepath.Join(out, "keys", "owner.pub"),
			"--from", url, "--log-key", logPub, "--result-verdict", verdictFile, "--result-summary", summaryFile}, extra...)
	}
	results := func() (string, map[string]any) {
		t.Helper()
		v, err := os.ReadFile(verdictFile)
		if err != nil {
			t.Fatal(err)
		}
		s, err := os.ReadFile(summaryFile)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if len(s) > 1023 || bytes.Contains(s, []byte("\n")) || json.Unmarshal(s, &m) != nil {
			t.Fatalf("summary is not one JSON line under 1 KiB: %q", s)
		}
		os.Remove(verdictFile)
		os.Remove(summaryFile)
		return string(v), m
	}

	// A wait that ends with test.unit missing: FAILED, naming it.
	r := ss(t, gate("--run-id", runID, "--wait", "2s")...)
	if r.code == 0 || !strings.Contains(r.stdout, `step "test.unit": no link found`) || !strings.Contains(r.stderr, "waiting up to 2s for the links of 2 step(s): test.vet, test.unit") {
		t.Fatalf("wait timed out:\n%s", r)
	}
	if v, s := results(); v != "FAILED" || !strings.Contains(s["note"].(string), "test.") || fmt.Sprint(s["missing"]) != "[test.vet test.unit]" {
		t.Fatalf("results %s %v", v, s)
	}
	// Rollout: the same, exit 0, VERDICT still FAILED.
	if r := ss(t, gate("--run-id", runID, "--strict=false")...); r.code != 0 || !strings.Contains(r.stdout, "VERIFICATION FAILED") {
		t.Fatalf("--strict=false:\n%s", r)
	}
	if v, _ := results(); v != "FAILED" {
		t.Fatalf("--strict=false verdict %s", v)
	}
	// A gate after fetch only: its scope is there.
	if r := ss(t, gate("--run-id", runID, "--steps", "fetch")...); r.code != 0 {
		t.Fatalf("--steps fetch:\n%s", r)
	}
	if v, s := results(); v != "PASSED" || s["steps"].(float64) != 1 {
		t.Fatalf("--steps fetch: %s %v", v, s)
	}
	// A scope naming no task of the layout: ERROR, not a verdict.
	if r := ss(t, gate("--run-id", runID, "--steps", "deploy")...); r.code == 0 || !strings.Contains(r.stderr, `"deploy"`) {
		t.Fatalf("--steps deploy:\n%s", r)
	}
	if v, _ := results(); v != "ERROR" {
		t.Fatalf("--steps deploy verdict %s", v)
	}

	// Started before the test task is signed: it waits, then passes.
	start := time.Now()
	var stdout, stderr bytes.Buffer
	c := exec.Command(stepseal, gate("--run-id", runID, "--wait", "2m")...)
	c.Dir, c.Stdout, c.Stderr = repo, &stdout, &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	add(test...)
	if err := c.Wait(); err != nil {
		t.Fatalf("gate that waited: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if v, s := results(); v != "PASSED" || s["runId"] != runID || !strings.Contains(stderr.String(), "waiting up to 2m0s") {
		t.Fatalf("waited gate: %s %v\n%s", v, s, stderr.String())
	}
	t.Logf("gate passed %.1fs after it started (links logged after 2 s)", time.Since(start).Seconds())

	// Another run's ID: the log holds none of its links; they are missing.
	if r := ss(t, gate("--run-id", "0b9c1d6e-aaaa-4bbb-8ccc-000000000000")...); r.code == 0 || !strings.Contains(r.stdout, "no link found") {
		t.Fatalf("another run:\n%s", r)
	}
	results()
	// Links replayed into a run directory from another run: run mismatch.
	if r := ss(t, "verify", "--layout", filepath.Join(out, "root.layout"), "--layout-key", filepath.Join(out, "keys", "owner.pub"),
		"--links", filepath.Join(out, "links"), "--run-id", "0b9c1d6e-aaaa-4bbb-8ccc-000000000000", "-o", "json"); true {
		expectRejected(t, r, "run-mismatch", "0b9c1d6e-aaaa-4bbb-8ccc-000000000000")
	}

	// Values a shell would interpret are data: a run ID and a scope
	// naming nothing, the log at a closed port (could not check: ERROR).
	for _, bad := range []string{"$(x)", "; rm -rf /", "a\nb"} {
		r := ss(t, gate("--run-id", bad, "--steps", bad)...)
		if r.code == 0 {
			t.Fatalf("%q accepted:\n%s", bad, r)
		}
		if v, _ := results(); v != "ERROR" {
			t.Fatalf("%q: verdict %s", bad, v)
		}
	}
	r = ss(t, "verify", "--layout", filepath.Join(out, "root.layout"), "--layout-key", filepath.Join(out, "keys", "owner.pub"),
		"--from", "http://127.0.0.1:1/", "--log-key", logPub, "--run-id", runID, "--result-verdict", verdictFile, "--result-summary", summaryFile, "--strict=false")
	if r.code != 0 || !strings.Contains(r.stderr, "error:") {
		t.Fatalf("unreachable log, not strict:\n%s", r)
	}
	if v, s := results(); v != "ERROR" || s["note"] == nil {
		t.Fatalf("unreachable log: %s %v", v, s)
	}
}

// TestVerifyGateTUFPin: a gate with no TUF cache and no root file (a
// Task's Pod) starts from the repository's 1.root.json when its sha256 is
// the pin, and takes the layout and owners from TUF; another pin is
// refused before anything is trusted, and the results say ERROR.
func TestVerifyGateTUFPin(t *testing.T) {
	out := copyDir(t, goBuild(t))
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "layouts/go-build.layout",
		"--key", filepath.Join(out, "keys", "owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d1.json"))
	tr.accept(t, []string{p("d1.json")})
	layout := filepath.Join(out, "root.layout")
	tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", layout,
		"--key", filepath.Join(out, "keys", "owner.key"), "--out", p("l1.json"))
	tr.accept(t, []string{p("l1.json")}, "layouts/go-build.layout="+layout)
	pin := sha256File(t, filepath.Join(tr.site, "metadata", "1.root.json"))
	verdictFile := p("VERDICT")
	gate := func(pin string) result {
		return ss(t, "verify", "--trust", tr.url, "--trust-cache", filepath.Join(t.TempDir(), "cache"), "--trust-root-sha256", pin,
			"--layout", "go-build", "--links", filepath.Join(out, "links"), "--result-verdict", verdictFile)
	}
	if r := gate(pin); r.code != 0 {
		t.Fatalf("pinned root:\n%s", r)
	}
	if b, _ := os.ReadFile(verdictFile); string(b) != "PASSED" {
		t.Fatalf("verdict %s", b)
	}
	other := strings.Repeat("0", 64)
	if r := gate(other); r.code == 0 || !strings.Contains(r.stderr, "root pin mismatch") || !strings.Contains(r.stderr, other) {
		t.Fatalf("another pin:\n%s", r)
	}
	if b, _ := os.ReadFile(verdictFile); string(b) != "ERROR" {
		t.Fatalf("verdict %s", b)
	}
	// Without --trust a pin means nothing: refused, not ignored.
	if r := ss(t, "verify", "--trust-root-sha256", pin, "--layout", layout, "--layout-key", filepath.Join(out, "keys", "owner.pub"),
		"--links", filepath.Join(out, "links")); r.code == 0 || !strings.Contains(r.stderr, "needs --trust") {
		t.Fatalf("pin without --trust:\n%s", r)
	}
}

package e2e

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveLog starts `stepseal log serve` on a new log allowing the run's
// functionary keys, and returns its URL and the log's public key file.
func serveLog(t *testing.T, out string) (url, logPub string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	logPub = filepath.Join(dir, "log.pub")
	args := []string{"log", "serve", dir, "--origin", "example.com/e2e-served", "--addr", "127.0.0.1:0"}
	pubs, _ := filepath.Glob(filepath.Join(out, "keys", "*.pub"))
	for _, p := range pubs {
		args = append(args, "--allow", p)
	}
	c := exec.Command(stepseal, args...)
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "serving") {
				lines <- l
			}
		}
	}()
	select {
	case l := <-lines:
		_, rest, _ := strings.Cut(l, " at ")
		url, _, _ = strings.Cut(rest, ";")
		return url, logPub
	case <-time.After(60 * time.Second):
		t.Fatal("stepseal log serve did not start")
	}
	return "", ""
}

// TestVerifyFromServedLog: a run's links appended to a served log verify
// from it (by run ID, and by a product's digest), with every answer
// verified; a link left out of the log is a missing step, another log key
// is refused, and a subject no run names is missing.
func TestVerifyFromServedLog(t *testing.T) {
	out := goBuild(t)
	url, logPub := serveLog(t, out)
	links, _ := filepath.Glob(filepath.Join(out, "links", "*.link"))
	var kept []string
	for _, l := range links {
		if !strings.HasPrefix(filepath.Base(l), "test.") {
			kept = append(kept, l)
		}
	}
	add := func(files ...string) {
		t.Helper()
		if r := ss(t, append([]string{"log", "add", "--server", url, "--log-key", logPub}, files...)...); r.code != 0 {
			t.Fatal(r)
		}
	}
	add(kept...)
	runID := readJSON(t, links[0])["signed"].(map[string]any)["environment"].(map[string]any)["stepseal.dev/run-id"].(string)
	verifyFrom := func(extra ...string) result {
		t.Helper()
		return ss(t, append([]string{"verify", "--layout", filepath.Join(out, "root.layout"), "--layout-key", filepath.Join(out, "keys", "owner.pub"),
			"--from", url, "--log-key", logPub, "-o", "json"}, extra...)...)
	}
	expectRejected(t, verifyFrom("--run-id", runID), "missing-step", "test.unit")

	add(links...)
	if r := verifyFrom("--run-id", runID, "--artifact", "dist/app.tar.gz="+filepath.Join(out, "work/workspaces/dist/app.tar.gz")); r.code != 0 {
		t.Fatalf("verify --from --run-id:\n%s", r)
	}
	app := "sha256:" + sha256File(t, filepath.Join(out, "work/workspaces/dist/app.tar.gz"))
	if r := verifyFrom("--subject", app); r.code != 0 {
		t.Fatalf("verify --from --subject:\n%s", r)
	}
	if r := verifyFrom("--subject", "sha256:"+strings.Repeat("0", 64)); r.code == 0 || !strings.Contains(r.stderr, "no run in the log") {
		t.Fatalf("unknown subject:\n%s", r)
	}
	_, otherPub := serveLog(t, out)
	if r := verifyFrom("--run-id", runID, "--log-key", otherPub); r.code == 0 || !strings.Contains(r.stderr, "checkpoint") {
		t.Fatalf("another log's key:\n%s", r)
	}
	if r := verifyFrom("--run-id", runID, "--links", filepath.Join(out, "links")); r.code == 0 || !strings.Contains(r.stderr, "not with --links") {
		t.Fatalf("--from with --links:\n%s", r)
	}
}

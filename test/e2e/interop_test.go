package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// genKeys makes the key directory `stepseal run --keys` reads.
func genKeys(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if r := ss(t, "keys", "generate", "--out", dir, "--name", n); r.code != 0 {
			t.Fatal(r)
		}
	}
}

// A link replayed from another run of the same pipeline, signed by the right
// functionary with identical products (the build is reproducible): in-toto
// has nothing to object to, stepseal's run binding rejects it.
func TestLinkReplayedFromAnotherRun(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	genKeys(t, keys, "owner", "publisher", "fetcher", "tester", "builder", "packager")
	out1 := filepath.Join(t.TempDir(), "run1")
	out2 := filepath.Join(t.TempDir(), "run2")
	for _, o := range []string{out1, out2} {
		if r := ss(t, "run", "examples/go-build", "--keys", keys, "--out", o, "-q"); r.code != 0 {
			t.Fatal(r)
		}
	}
	replayed := linkFile(t, out2, "build.compile")
	target := filepath.Join(out1, "links", filepath.Base(replayed))
	data, err := os.ReadFile(replayed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, data, 0o644); err != nil {
		t.Fatal(err)
	}
	expectRejected(t, ssVerify(t, out1, "-o", "json"), "run-mismatch", "build.compile")
	if r := inTotoVerify(t, out1, filepath.Join(keys, "owner.pub")); r.code != 0 {
		t.Fatalf("in-toto-golang was expected to accept the replay (it has no run binding), got:\n%s", r)
	}
}

// Links written by in-toto-golang's own `in-toto run` verify with stepseal.
func TestInTotoRunLinksAcceptedByStepsealVerify(t *testing.T) {
	recordedChain(t, func(t *testing.T, build, links, key, step string, materials bool, cmd ...string) {
		args := []string{"run", "-n", step, "-k", key, "-p", "ws", "-d", links}
		if materials {
			args = append(args, "-m", "ws")
		}
		args = append(args, "--")
		args = append(args, cmd...)
		if r := runIn(t, build, inToto(t), args...); r.code != 0 {
			t.Fatal(r)
		}
	})
}

// Links written by `stepseal record` (our in-step recorder) verify with
// in-toto-golang and with stepseal.
func TestStepsealRecordLinksAcceptedByBoth(t *testing.T) {
	recordedChain(t, func(t *testing.T, build, links, key, step string, materials bool, cmd ...string) {
		args := []string{"record", "--step", step, "--key", key, "-p", "ws", "-d", links}
		if materials {
			args = append(args, "-m", "ws")
		}
		args = append(args, "--")
		args = append(args, cmd...)
		if r := runIn(t, build, stepseal, args...); r.code != 0 {
			t.Fatal(r)
		}
	})
}

func runIn(t *testing.T, dir, name string, args ...string) result {
	t.Helper()
	return run(t, nil, "sh", append([]string{"-c", `cd "$0" && exec "$@"`, dir, name}, args...)...)
}

// recorder performs one step of the tiny chain in directory build.
type recorder func(t *testing.T, build, links, key, step string, materials bool, cmd ...string)

// recordedChain builds a two-step layout with `stepseal layout create`,
// performs the steps with rec, and checks both verifiers accept the chain
// and both reject a later modification of the read-only workspace.
func recordedChain(t *testing.T, rec recorder) {
	work := t.TempDir()
	keys := filepath.Join(work, "keys")
	genKeys(t, keys, "owner", "maker", "checker")
	pipeline := `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: tiny}
spec:
  workspaces: [{name: ws}]
  tasks:
  - name: make
    workspaces: [{name: out, workspace: ws}]
    taskSpec:
      workspaces: [{name: out}]
      steps:
      - name: write
        image: alpine
        script: echo hi > $(workspaces.out.path)/out.txt
  - name: check
    runAfter: [make]
    workspaces: [{name: in, workspace: ws}]
    taskSpec:
      workspaces: [{name: in, readOnly: true}]
      steps:
      - name: read
        image: alpine
        command: [cat]
        args: [$(workspaces.in.path)/out.txt]
`
	functionaries := `apiVersion: stepseal.dev/v1alpha1
kind: Functionaries
metadata: {name: tiny}
spec:
  functionaries:
  - {name: maker, publicKey: keys/maker.pub}
  - {name: checker, publicKey: keys/checker.pub}
  steps:
  - {match: "make.*", functionaries: [maker]}
  - {match: "check.*", functionaries: [checker]}
  output: ws/out.txt
`
	write := func(name, s string) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pf, ff := write("pipeline.yaml", pipeline), write("functionaries.yaml", functionaries)
	layoutPath := filepath.Join(work, "root.layout")
	if r := ss(t, "layout", "create", "--pipeline", pf, "--functionaries", ff, "--owner-key", filepath.Join(keys, "owner.key"), "--out", layoutPath); r.code != 0 {
		t.Fatal(r)
	}
	// Perform the steps with in-toto-golang's recorder, in a directory whose
	// top level is the workspace, so artifact names are "ws/<path>".
	links := filepath.Join(work, "links")
	os.MkdirAll(filepath.Join(work, "build", "ws"), 0o755)
	os.MkdirAll(links, 0o755)
	build := filepath.Join(work, "build")
	rec(t, build, links, filepath.Join(keys, "maker.key"), "make.write", false, "sh", "-c", "echo hi > ws/out.txt")
	rec(t, build, links, filepath.Join(keys, "checker.key"), "check.read", true, "cat", "ws/out.txt")
	verifyArgs := []string{"verify", "--layout", layoutPath, "--layout-key", filepath.Join(keys, "owner.pub"), "--links", links, "--artifact", "ws/out.txt=" + filepath.Join(work, "build", "ws", "out.txt")}
	if r := ss(t, verifyArgs...); r.code != 0 {
		t.Fatalf("stepseal rejects the recorded links:\n%s", r)
	}
	// And in-toto-golang agrees on the same files.
	if r := run(t, nil, inToto(t), "verify", "-l", layoutPath, "-k", filepath.Join(keys, "owner.pub"), "-d", links); r.code != 0 {
		t.Fatal(r)
	}
	// The checker modifying the read-only workspace is caught by both.
	rec(t, build, links, filepath.Join(keys, "checker.key"), "check.read", true, "sh", "-c", "echo evil >> ws/out.txt")
	expectRejected(t, ss(t, append(verifyArgs[:len(verifyArgs)-2], "-o", "json")...), "artifact-rule", "check.read", "ws/out.txt")
	if r := run(t, nil, inToto(t), "verify", "-l", layoutPath, "-k", filepath.Join(keys, "owner.pub"), "-d", links); r.code == 0 {
		t.Fatal("in-toto-golang accepted a modified read-only workspace")
	}
}

// An expired layout, re-created from the same pipeline with a validity that
// has already passed, is rejected by both.
func TestExpiredLayout(t *testing.T) {
	dir := copyDir(t, goBuild(t))
	// A functionaries file that points at this run's public keys.
	src, err := os.ReadFile(filepath.Join(repo, "examples", "go-build", "functionaries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := string(src)
	for _, n := range []string{"fetcher", "tester", "builder", "packager"} {
		f = strings.Replace(f, "- name: "+n+"\n", "- name: "+n+"\n    publicKey: "+filepath.Join(dir, "keys", n+".pub")+"\n", 1)
	}
	ff := filepath.Join(dir, "functionaries.yaml")
	os.WriteFile(ff, []byte(f), 0o644)
	if r := ss(t, "layout", "create", "--pipeline", "examples/go-build/pipeline.yaml", "--tasks", "examples/go-build/tasks",
		"--functionaries", ff, "--owner-key", filepath.Join(dir, "keys", "owner.key"), "--expires", "2s", "--force",
		"--out", filepath.Join(dir, "root.layout")); r.code != 0 {
		t.Fatal(r)
	}
	if r := ssVerify(t, dir); r.code != 0 {
		t.Fatalf("the re-created layout must verify before it expires:\n%s", r)
	}
	time.Sleep(2500 * time.Millisecond)
	expectRejected(t, ssVerify(t, dir, "-o", "json"), "expired")
	if r := inTotoVerify(t, dir); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "expired") {
		t.Fatalf("in-toto-golang on an expired layout:\n%s", r)
	}
}

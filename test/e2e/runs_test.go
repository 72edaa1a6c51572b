package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runFile runs one file of testdata/runs with stepseal run and returns its
// output directory; the run must pass verification.
func runFile(t *testing.T, file string, extra ...string) (string, result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	args := append([]string{"run", filepath.Join("test", "e2e", "testdata", "runs", file), "--out", out}, extra...)
	r := ss(t, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "VERIFICATION PASSED") {
		t.Fatalf("stepseal run %s:\n%s", file, r)
	}
	return out, r
}

// stepRules are a layout step's artifact rules, one rule a line.
type stepRules struct{ materials, products string }

// layoutRules reads the run's root.layout: each step's artifact rules.
func layoutRules(t *testing.T, out string) map[string]stepRules {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "root.layout"))
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Signed struct {
			Steps []struct {
				Name      string     `json:"name"`
				Materials [][]string `json:"expected_materials"`
				Products  [][]string `json:"expected_products"`
			} `json:"steps"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	lines := func(rules [][]string) string {
		var out []string
		for _, r := range rules {
			out = append(out, strings.Join(r, " "))
		}
		return strings.Join(out, "\n")
	}
	m := map[string]stepRules{}
	for _, s := range l.Signed.Steps {
		m[s.Name] = stepRules{lines(s.Materials), lines(s.Products)}
	}
	return m
}

// wantFile checks a file of the run's work directory (rel is
// slash-separated, under --out/work).
func wantFile(t *testing.T, out, rel, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "work", filepath.FromSlash(rel)))
	if err != nil || string(b) != want {
		t.Errorf("%s = %q, %v; want %q", rel, b, err, want)
	}
}

// The corpus of PipelineRun and TaskRun files, written as Tekton's
// documentation writes them: each runs, verifies with stepseal, and
// in-toto-golang's verify agrees.
func TestRunFilesVerify(t *testing.T) {
	cases := []struct {
		file  string
		steps []string
		check func(t *testing.T, out string, r result)
	}{
		// Rows of the corpus files named after Tekton's examples; each check
		// asserts the feature happened, not only that the run verified.
		{"pipelinerun-array-params.yaml", []string{"plan.list", "plan.flags", "plan.targets", "build.build"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/platforms.txt", "linux/amd64\nlinux/arm64\ndarwin/arm64\n")
			wantFile(t, out, "workspaces/out/flags.txt", "2 flags: -trimpath -v\nsecond: linux/arm64\n")
			wantFile(t, out, "workspaces/out/built.txt", "built linux-amd64-bin\nbuilt darwin-arm64-bin\nfirst: linux-amd64-bin\n")
		}},
		{"pipelinerun-object-params.yaml", []string{"task1.write-result", "task2.echo-params"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/param.txt", "url=abc.com commit=sha123\n")
			wantFile(t, out, "workspaces/out/echo.txt", "foo=abc.com bar=sha123 bar-only=sha123\n")
		}},
		{"pipelinerun-implicit-params.yaml", []string{"echo-hello.echo", "echo-who.echo", "echo-hello-finally.echo"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/hello.txt", "Pipeline Hello World!\nwho: tekton\nAnd Finally ... Pipeline Hello World!\n")
		}},
		{"pipelinerun-param-precedence.yaml", []string{"echo-hello.echo", "echo-pipeline.echo", "echo-hello-finally.echo"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/task.txt", "Task Hello World!\n")
			wantFile(t, out, "workspaces/out/pipeline.txt", "Pipeline Hello World!\n")
			wantFile(t, out, "workspaces/out/finally.txt", "And finally.. Finally Hello World!\n")
		}},
		{"pipelinerun-results.yaml", []string{"sum.add", "multiply.product", "report.write"}, func(t *testing.T, out string, r result) {
			if !strings.Contains(r.stdout, `results: both=["12","20"] product=20 report={"product":"20","sum":"12"} sum=12`) {
				t.Errorf("pipeline results of every type missing:\n%s", r.stdout)
			}
			wantFile(t, out, "workspaces/out/report.txt", "sum=12 product=20\n")
		}},
		{"pipelinerun-when.yaml", []string{"create-file.write-new-stuff", "check-file.check", "deploy.deploy"}, func(t *testing.T, out string, r result) {
			if strings.Contains(r.stdout, "skipped") {
				t.Errorf("a task or step was skipped:\n%s", r.stdout)
			}
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "source", "checked.txt"))
			if !strings.HasPrefix(string(b), "checked on guarded-pr-") {
				t.Errorf("checked.txt = %q: want the generated PipelineRun name", b)
			}
			wantFile(t, out, "workspaces/source/deployed.txt", "deployed to staging\n")
		}},
		{"pipelinerun-ignore-step-error.yaml", []string{"task1.exit-with-1", "task1.write-a-result", "task1.unnamed-2", "task1.read-exit-codes", "task2.exit-with-255", "task2.verify-a-task-result"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/ws/exit-codes.txt", "exit-with-1: 1\nwrite-a-result: 11\nunnamed-2: 3\n")
			wantFile(t, out, "workspaces/ws/verified.txt", "task1-result: 123; exit-with-255: 255\n")
			if got := readJSON(t, linkFile(t, out, "task1.write-a-result")); !strings.Contains(fmt.Sprint(got), "return-value:11") {
				t.Errorf("the link does not record the step's exit code 11: %v", got)
			}
		}},
		{"taskrun-steptemplate.yaml", []string{"steptemplate-env-merge.foo", "steptemplate-env-merge.bar"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/env.txt", "FOO=foo QUX=original\nBAR=bar QUX=override\n")
		}},
		{"pipelinerun-context.yaml", []string{"task1.print-uid", "task1.print-names", "task1.print-retries"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/names.txt", "Task name: context-run-task1\nTaskRun name: context-run-task1\n"+
				"Pipeline name from params: context-run\nPipelineRun name from params: context-run\n"+
				"PipelineRun name from pipeline defaults: pipelinerun: context-run\nPipelineRun namespace from params: ci\n")
			wantFile(t, out, "workspaces/out/retries.txt", "PipelineTask retries from params: 2\n")
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "out", "uids.txt"))
			if lines := strings.Split(string(b), "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], "PipelineRun UID from params: local-") {
				t.Errorf("uids.txt = %q", b)
			}
		}},
		{"taskrun-context.yaml", []string{"context-taskrun.print"}, func(t *testing.T, out string, r result) {
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "out", "context.txt"))
			if !strings.HasPrefix(string(b), "task=print-context taskRun=context-taskrun\n") {
				t.Errorf("context.txt = %q", b)
			}
		}},
		{"pipelinerun-timeouts.yaml", []string{"quick.sleep", "after.check"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/quick.txt", "slept within 30s\n")
			wantFile(t, out, "workspaces/out/after.txt", "done within 2m\n")
		}},
		{"pipelinerun-pvc-subpaths.yaml", []string{"writer-1.write", "writer-2.write", "read-all.read-1", "read-all.read-2"}, func(t *testing.T, out string, r result) {
			// The run's subPath (builds) and each task's (dir-1, dir-2).
			wantFile(t, out, "claims/shared-task-storage/builds/dir-1/foo", "stuff-1\n")
			wantFile(t, out, "claims/shared-task-storage/builds/dir-2/foo", "stuff-2\n")
		}},
		{"taskrun-configmap.yaml", []string{"configmap.secret"}, func(t *testing.T, out string, r result) {
			fi, err := os.Stat(filepath.Join(out, "work", "workspaces", "custom", "conf", "my.data"))
			if err != nil || fi.Mode().Perm() != 0o400 {
				t.Errorf("the item at its path with its mode: %v, %v", fi, err)
			}
			wantFile(t, out, "workspaces/out/copy.data", "tasks are my jam")
		}},
		{"pipelinerun-secret.yaml", []string{"check.check", "list.list"}, func(t *testing.T, out string, r result) {
			fi, err := os.Stat(filepath.Join(out, "work", "workspaces", "creds", "token"))
			if err != nil || fi.Mode().Perm() != 0o400 {
				t.Errorf("token with defaultMode 0400: %v, %v", fi, err)
			}
			wantFile(t, out, "workspaces/out/checked.txt", "token of robot is present\n")
			wantFile(t, out, "workspaces/out/keys.txt", "token\nuser\n")
		}},
		{"pipelinerun-optional-workspaces.yaml", []string{"print-motd.unnamed-0", "use-cache.check"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/motd.txt", "Message from message_1: Hello, good morning!\nMessage from message_2: Hello, good evening!\n")
			wantFile(t, out, "workspaces/out/cache.txt", "no cache bound\n")
			if _, err := os.Stat(filepath.Join(out, "work", "workspaces", "cache")); !os.IsNotExist(err) {
				t.Errorf("the unbound workspace got a directory: %v", err)
			}
		}},
		{"taskrun-optional-workspace.yaml", []string{"optional-workspaces.check-workspaces"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/output/bound.txt", "source-code unbound, path ''\n")
		}},
		{"taskrun-workspace-readonly.yaml", []string{"workspaces-readonly.write-allowed", "workspaces-readonly.read-only"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/write-allowed/sub/written.txt", "hello\n")
			wantFile(t, out, "workspaces/write-allowed/sub/where.txt", "write-allowed/sub\n")
			wantFile(t, out, "workspaces/write-allowed/read.txt", "read-only workspace is readonly-claim, empty\n")
			if _, err := os.Stat(filepath.Join(out, "work", "claims", "readonly-claim")); err != nil {
				t.Errorf("the claim's directory: %v", err)
			}
		}},
		{"pipelinerun-fan-out-in.yaml", []string{"prepare.write", "upper.convert", "reverse.convert", "count.count", "collect.join"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/source/joined.txt", "alpha\tALPHA\tgamma\nbeta\tBETA\tbeta\ngamma\tGAMMA\talpha\n2 branches: 3+3 lines\n")
			// collect ran last, after all three branches.
			if i, j := strings.Index(r.stdout, "==> count.count"), strings.Index(r.stdout, "==> collect.join"); i < 0 || j < i {
				t.Errorf("collect did not run after the branches:\n%s", r.stdout)
			}
		}},
		{"pipelinerun-finally-status.yaml", []string{"task1.hello", "task2.success", "task3.verify-dag-task-status", "task4.verify-aggregate-tasks-status"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/tasks.txt", "task1=Succeeded task2=Succeeded\n")
			wantFile(t, out, "workspaces/out/aggregate/status.txt", "aggregate=Succeeded\n")
		}},
		{"pipelinerun-taskref-beside.yaml", []string{"clone.clone", "describe.print"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/shared/CHECKOUT", "checked out v1.2.3\n")
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "shared", "context.txt"))
			if !strings.HasPrefix(string(b), "task=print-context taskRun=taskref-beside-run-describe\n") {
				t.Errorf("the Task beside the file did not run as describe: context.txt = %q", b)
			}
			if !strings.Contains(r.stdout, "results: commit=") {
				t.Errorf("no pipeline result:\n%s", r.stdout)
			}
		}},
		{"pipelinerun-projected.yaml", []string{"fetch-the-recipe.fetch-and-write", "print-the-recipe.print-secrets"}, func(t *testing.T, out string, r result) {
			// The Secret's key and the ConfigMap's item side by side, read-only.
			for _, f := range []string{"password", "recipe.txt"} {
				fi, err := os.Stat(filepath.Join(out, "work", "workspaces", "data-store", f))
				if err != nil || fi.Mode().Perm() != 0o444 {
					t.Errorf("data-store/%s: %v, %v; want it read-only", f, fi, err)
				}
			}
			wantFile(t, out, "workspaces/data-store/password", "hunter2")
			wantFile(t, out, "workspaces/out/first-line.txt", "1. Heat oven to 325 degrees F\n")
			if _, err := os.Stat(filepath.Join(out, "work", "claims", "projected-task-storage", "recipe.txt")); err != nil {
				t.Errorf("the recipe was not copied to the claim: %v", err)
			}
		}},
		{"taskrun-taskref.yaml", []string{"array-default.unnamed-0", "array-default.unnamed-1", "array-default.last"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/out/echo.txt", "baz qux quux\nfoo bar\ndone\n")
		}},
		{"pipelinerun-inline.yaml", []string{"compose.write", "shout.upper"}, func(t *testing.T, out string, r result) {
			// generateName only: the inline Pipeline is named after it.
			if !strings.Contains(r.stdout, "pipeline inline-greeting succeeded") {
				t.Errorf("the inline Pipeline is not named after the run:\n%s", r.stdout)
			}
			if b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "shared", "shout.txt")); string(b) != "HELLO, WORLD!\n" {
				t.Errorf("params from the run and the Pipeline's default not applied: shout.txt = %q", b)
			}
		}},
		{"pipelinerun-ref.yaml", []string{"count.count"}, func(t *testing.T, out string, r result) {
			if !strings.Contains(r.stdout, "pipeline word-count succeeded") || !strings.Contains(r.stdout, "words=4") {
				t.Errorf("the run's param did not reach the referenced Pipeline:\n%s", r.stdout)
			}
		}},
		{"taskrun-inline.yaml", []string{"echo-run.echo"}, func(t *testing.T, out string, r result) {
			b, err := os.ReadFile(filepath.Join(out, "work", "workspaces", "scratch", "message.txt"))
			if err != nil || string(b) != "hello from a TaskRun\none two three\n" {
				t.Errorf("message.txt = %q, %v", b, err)
			}
		}},
		{"pipelinerun-configmap.yaml", []string{"package.read", "package.stamp"}, func(t *testing.T, out string, r result) {
			ws := filepath.Join(out, "work", "workspaces", "settings")
			for _, f := range []string{"app.properties", "docs/NOTES.md"} {
				fi, err := os.Stat(filepath.Join(ws, f))
				if err != nil || fi.Mode().Perm() != 0o444 {
					t.Errorf("%s: %v, mode %v; want the item, read-only", f, err, fi)
				}
			}
			if _, err := os.Stat(filepath.Join(ws, "unused")); err == nil {
				t.Error("a key not among the items was mounted")
			}
			if b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "dist", "VERSION")); string(b) != "demo 1.2.3\n" {
				t.Errorf("VERSION = %q", b)
			}
		}},
		{"taskrun-secret.yaml", []string{"secret-run.check"}, nil},
		{"pipelinerun-volumes.yaml", []string{"fetch.write", "build.compile"}, func(t *testing.T, out string, r result) {
			if _, err := os.Stat(filepath.Join(out, "work", "claims", "cache-claim", "go", "obj")); err != nil {
				t.Errorf("the claim's directory (with the binding's subPath) was not used: %v", err)
			}
			if b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "scratch", "claim")); string(b) != "cache-claim\n" {
				t.Errorf("$(workspaces.cache.claim) = %q, want cache-claim", b)
			}
		}},
		{"pipelinerun-rbac.yaml", []string{"announce.say"}, func(t *testing.T, out string, r result) {
			var lines []string
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.Contains(l, "ignoring") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "ServiceAccount/pipeline-runner, Role/pipeline-runner, RoleBinding/pipeline-runner") {
				t.Errorf("want one line naming the ignored objects, got %q", lines)
			}
		}},
		{"pipelinerun-finally.yaml", []string{"fetch.checkout", "build.compile", "report.summarize", "announce.print"}, func(t *testing.T, out string, r result) {
			// The finally tasks ran after the DAG and saw its status; the
			// pipeline's result comes from one of them.
			if !strings.Contains(r.stdout, "results: outcome=Succeeded") {
				t.Errorf("no pipeline result from the finally task:\n%s", r.stdout)
			}
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "source", "report.txt"))
			if string(b) != "tasks: Succeeded; build: Succeeded (Succeeded)\n" {
				t.Errorf("report.txt = %q", b)
			}
		}},
		{"pipelinerun-recorded.yaml", []string{"checkout.write", "compile.build"}, func(t *testing.T, out string, r result) {
			// The record pair is left out (with one line saying so): the
			// build step ran and is the task's only step.
			wantFile(t, out, "workspaces/shared/out/app.txt", "int main(void) { return 0; }\n")
			if !strings.Contains(r.stdout, "record StepActions of compile (measure-materials, measure-products)") {
				t.Errorf("no line about the record StepActions:\n%s", r.stdout)
			}
			if _, ok := layoutRules(t, out)["compile.measure-materials"]; ok {
				t.Error("the layout has a step for the record StepAction")
			}
		}},
		{"pipelinerun-stepactions.yaml", []string{"produce.write", "produce.hash", "produce.record", "check.verify"}, func(t *testing.T, out string, r result) {
			// The task result came from the step result and reached the
			// pipeline result; the later step read it.
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "source", "message.txt"))
			if string(b) != "built with StepActions\n" {
				t.Errorf("message.txt = %q: the step's params did not reach the v1alpha1 StepAction", b)
			}
			sum := sha256.Sum256(b)
			if !strings.Contains(r.stdout, "results: digest="+hex.EncodeToString(sum[:])) {
				t.Errorf("no pipeline result from the step result:\n%s", r.stdout)
			}
		}},
		{"pipelinerun-retries.yaml", []string{"fetch.checkout", "build.compile"}, func(t *testing.T, out string, r result) {
			// The failed attempt's link is kept beside the last attempt's.
			links, _ := filepath.Glob(filepath.Join(out, "links", "build.compile.*.attempt-1.link"))
			if len(links) != 1 {
				t.Errorf("the failed attempt's link: %v", links)
			}
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "source", "attempts.log"))
			if string(b) != "attempt 0 (retries allowed: 1)\nattempt 1 (retries allowed: 1)\n" {
				t.Errorf("attempts.log = %q", b)
			}
			// It is stored in the run's log (layout, three links,
			// provenance) and named in the provenance.
			lv := ss(t, "log", "verify", "--log", filepath.Join(out, "store"), "--key", filepath.Join(out, "log.pub"), "-o", "json")
			if lv.code != 0 || !strings.Contains(lv.stdout, `"entriesVerified": 5`) {
				t.Errorf("log verify: want 5 entries:\n%s", lv)
			}
			if len(links) == 1 {
				prov, _ := os.ReadFile(filepath.Join(out, "provenance.json"))
				var env struct{ Payload []byte }
				if err := json.Unmarshal(prov, &env); err != nil || !strings.Contains(string(env.Payload), `"name":"`+filepath.Base(links[0])+`"`) {
					t.Errorf("provenance.json does not name %s: %v\n%s", filepath.Base(links[0]), err, env.Payload)
				}
			}
		}},
		{"pipelinerun-propagated-workspaces.yaml", []string{"fetch-secure-data.fetch-and-write-secure", "print-the-recipe.print-secrets"}, func(t *testing.T, out string, r result) {
			// Workspaces neither the inline Pipeline declares nor its
			// tasks bind reached the steps, and the layout's rules cover
			// them: the second task's materials are the first's products.
			wantFile(t, out, "workspaces/shared-data/first-line.txt", "1. Heat oven to 325 degrees F\n")
			b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "shared-data", "claim.txt"))
			if !regexp.MustCompile(`^pvc-[0-9a-f]{10}\n$`).Match(b) {
				t.Errorf("$(workspaces.shared-data.claim) = %q, want the PVC Tekton creates from the volumeClaimTemplate", b)
			}
			rules := layoutRules(t, out)
			if m := rules["print-the-recipe.print-secrets"].materials; !strings.Contains(m, "MATCH shared-data/** WITH PRODUCTS FROM fetch-secure-data.fetch-and-write-secure") {
				t.Errorf("the second task's materials do not cover the propagated workspace: %s", m)
			}
			if m := rules["fetch-secure-data.fetch-and-write-secure"].materials; !strings.Contains(m, "ALLOW password-vault/password") {
				t.Errorf("the first task's materials do not name the Secret's file: %s", m)
			}
		}},
		{"pipelinerun-propagated-workspaces-in-pipelines.yaml", []string{"t1.write", "t2.unnamed-0", "t2.list"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/shared-data/t1.txt", "written by t1\n")
			wantFile(t, out, "workspaces/shared-data/listing.txt", "listing.txt\nt1.txt\n")
			if m := layoutRules(t, out)["t2.unnamed-0"].materials; !strings.Contains(m, "MATCH shared-data/** WITH PRODUCTS FROM t1.write") {
				t.Errorf("t2's materials do not cover the propagated workspace: %s", m)
			}
		}},
		{"pipelinerun-different-subpaths.yaml", []string{"writer-1.write", "writer-2.write", "read-all.read-1", "read-all.read-2", "read-one.read"}, func(t *testing.T, out string, r result) {
			wantFile(t, out, "workspaces/ws/both.txt", "bar-1\nbar-2\n")
			// The chain is per subPath region: dir-1 is tied to writer-1
			// although writer-2 (dir-2 only) ran in between.
			rules := layoutRules(t, out)
			if m := rules["read-all.read-1"].materials; m != "MATCH ws/dir-1/** WITH PRODUCTS FROM writer-1.write\nMATCH ws/dir-2/** WITH PRODUCTS FROM writer-2.write\nDISALLOW *" {
				t.Errorf("read-all.read-1 materials:\n%s", m)
			}
			if p := rules["read-one.read"].products; p != "MATCH ws/dir-1/** WITH PRODUCTS FROM writer-1.write\nDISALLOW *" {
				t.Errorf("read-one.read products:\n%s", p)
			}
		}},
		{"pipelinerun-cel-when.yaml", []string{"test.run", "release.tag", "preview.deploy"}, func(t *testing.T, out string, r result) {
			// The file's Tekton feature-flags ConfigMap enables CEL.
			ws := filepath.Join(out, "work", "workspaces", "out")
			if _, err := os.Stat(filepath.Join(ws, "release.txt")); err == nil {
				t.Error("release ran although its CEL expression is false")
			}
			if b, _ := os.ReadFile(filepath.Join(ws, "preview.txt")); string(b) != "preview of feature/login\n" {
				t.Errorf("preview.txt = %q", b)
			}
			if !strings.Contains(r.stdout, "Tekton feature flags from ConfigMap tekton-pipelines/feature-flags") ||
				!strings.Contains(r.stdout, `skip release.tag`) {
				t.Errorf("the flags or the excused CEL skip are not reported:\n%s", r.stdout)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			out, r := runFile(t, c.file, "-q")
			for _, s := range c.steps {
				linkFile(t, out, s)
			}
			if r := ssVerify(t, out); r.code != 0 {
				t.Fatalf("stepseal verify rejects the run:\n%s", r)
			}
			ir := inTotoVerify(t, out)
			if ir.code != 0 {
				t.Fatalf("in-toto-golang rejects the run:\n%s", ir)
			}
			checkCommandWarnings(t, out, ir)
			if c.check != nil {
				c.check(t, out, r)
			}
		})
	}
}

// checkCommandWarnings: the layout's expected commands are what the links
// record, so in-toto-golang warns only about a step whose command uses a
// value known only while running (another task's result, $(tasks.status),
// the retry count of a retried attempt), and about skip records, which
// record no command.
func checkCommandWarnings(t *testing.T, out string, ir result) {
	t.Helper()
	var l struct {
		Signed struct {
			Steps []struct {
				Name            string   `json:"name"`
				ExpectedCommand []string `json:"expected_command"`
			} `json:"steps"`
		} `json:"signed"`
	}
	b, err := os.ReadFile(filepath.Join(out, "root.layout"))
	if err != nil || json.Unmarshal(b, &l) != nil {
		t.Fatalf("root.layout: %v", err)
	}
	explained := 0
	for _, st := range l.Signed.Steps {
		want := strings.Join(st.ExpectedCommand, " ")
		links, _ := filepath.Glob(filepath.Join(out, "links", st.Name+".????????.link"))
		for _, p := range links {
			body := readJSON(t, p)["signed"].(map[string]any)
			var got []string
			for _, a := range body["command"].([]any) {
				got = append(got, a.(string))
			}
			if strings.Join(got, " ") == want {
				continue
			}
			by, _ := body["byproducts"].(map[string]any)
			// A retried task's final attempt has its own
			// $(context.task.retry-count).
			retried, _ := filepath.Glob(filepath.Join(out, "links", st.Name+".*.attempt-*.link"))
			if _, skip := by["stepseal.dev/skip"]; skip || strings.Contains(want, "$(tasks.") || len(retried) > 0 {
				explained++
				continue
			}
			t.Errorf("step %s: the layout expects %q, the link records %q: only values known while running may differ", st.Name, want, got)
		}
	}
	if n := strings.Count(ir.stdout, "WARNING: Expected command"); n != explained {
		t.Errorf("in-toto-golang gave %d command warnings, want %d (steps using run-time values, skip records):\n%s", n, explained, ir.stdout)
	}
}

// -p overrides a run file's param of the same name.
func TestRunFileParamOverride(t *testing.T) {
	_, r := runFile(t, "pipelinerun-ref.yaml", "-q", "-p", "text=two words")
	if !strings.Contains(r.stdout, "words=2") {
		t.Fatalf("-p did not override the run's param:\n%s", r.stdout)
	}
}

// A step that writes into a ConfigMap workspace (Kubernetes mounts it
// read-only; here the file is only mode 0444, which root ignores) fails
// verification with stepseal and with in-toto-golang.
func TestRunFileConfigMapChangeRejected(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "pipelinerun-configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := strings.Replace(string(src), "test ! -e $(workspaces.settings.path)/unused",
		"chmod u+w $(workspaces.settings.path)/app.properties; echo version=6.6.6 >> $(workspaces.settings.path)/app.properties", 1)
	if bad == string(src) {
		t.Fatal("the test's edit no longer applies")
	}
	file := filepath.Join(dir, "run.yaml")
	os.WriteFile(file, []byte(bad), 0o644)
	fn, _ := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"))
	os.WriteFile(filepath.Join(dir, "functionaries.yaml"), fn, 0o644)
	out := filepath.Join(dir, "out")
	r := ss(t, "run", file, "--out", out, "-q")
	if r.code == 0 || !strings.Contains(r.stdout, "VERIFICATION FAILED") || !strings.Contains(r.stdout, "settings/app.properties") {
		t.Fatalf("a changed ConfigMap workspace passed:\n%s", r)
	}
	if r := inTotoVerify(t, out); r.code == 0 {
		t.Fatalf("in-toto-golang accepts a changed ConfigMap workspace:\n%s", r)
	}
}

// A step that writes into a projected workspace fails verification, as
// for a ConfigMap workspace: the layout allows exactly its files.
func TestRunFileProjectedChangeRejected(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "pipelinerun-projected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := strings.Replace(string(src), "cp $(workspaces.secure-store.path)/recipe.txt $(workspaces.filedrop.path)", "cp $(workspaces.secure-store.path)/recipe.txt $(workspaces.filedrop.path); echo extra > $(workspaces.secure-store.path)/added.txt", 1)
	if bad == string(src) {
		t.Fatal("the test's edit no longer applies")
	}
	file := filepath.Join(dir, "run.yaml")
	os.WriteFile(file, []byte(bad), 0o644)
	fn, _ := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"))
	os.WriteFile(filepath.Join(dir, "functionaries.yaml"), fn, 0o644)
	out := filepath.Join(dir, "out")
	r := ss(t, "run", file, "--out", out, "-q")
	if r.code == 0 || !strings.Contains(r.stdout, "VERIFICATION FAILED") || !strings.Contains(r.stdout, "data-store/added.txt") {
		t.Fatalf("a file added to a projected workspace passed:\n%s", r)
	}
	if r := inTotoVerify(t, out); r.code == 0 {
		t.Fatalf("in-toto-golang accepts a changed projected workspace:\n%s", r)
	}
}

// Bad run files: a one-line error naming the object and the file, and
// nothing in --out.
func TestRunFileBadInput(t *testing.T) {
	const run = "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\nspec:\n  pipelineSpec:\n    workspaces: [{name: w}]\n    tasks:\n    - name: t\n      workspaces: [{name: w, workspace: w}]\n      taskSpec:\n        workspaces: [{name: w}]\n        steps: [{name: s, image: busybox, script: 'true'}]\n"
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"missing ConfigMap", run + "  workspaces: [{name: w, configMap: {name: absent}}]\n", []string{"PipelineRun \"r\"", "ConfigMap \"absent\"", "not found"}},
		{"unbound workspace", run, []string{"w"}},
		{"missing Pipeline", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\nspec: {pipelineRef: {name: nowhere}}\n", []string{"PipelineRun \"r\"", "nowhere"}},
		{"v1beta1 PipelineRun", strings.Replace(run, "tekton.dev/v1", "tekton.dev/v1beta1", 1), []string{"PipelineRun r", "tekton.dev/v1beta1"}},
		{"unknown group", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: gizmo}\n---\n" + run, []string{"Widget gizmo", "example.com/v1"}},
		{"unknown field in TaskRun", "apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: tr}\nspec: {taskRef: {name: x}, parms: []}\n", []string{"TaskRun tr", "parms"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "run.yaml")
			os.WriteFile(file, []byte(c.doc), 0o644)
			out := filepath.Join(dir, "out")
			r := ss(t, "run", file, "--out", out, "--functionaries", filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"), "-q")
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code == 0 || !strings.HasPrefix(last, "stepseal: ") {
				t.Fatalf("no one-line error:\n%s", r)
			}
			for _, w := range append(c.want, "run.yaml") {
				if !strings.Contains(last, w) {
					t.Errorf("error %q does not name %q", last, w)
				}
			}
			if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
				t.Errorf("bad input left %d entries in --out", len(entries))
			}
		})
	}
}

// stepseal layout create takes a run file too: the layout of the run's
// Pipeline, the same as stepseal run generates (step names, ConfigMap
// rules), with the ignored objects named on stderr in one line.
func TestLayoutCreateFromRunFile(t *testing.T) {
	keys := t.TempDir()
	genKeys(t, keys, "owner", "builder")
	dir := filepath.Join(repo, "test", "e2e", "testdata", "runs")
	fn, err := os.ReadFile(filepath.Join(dir, "functionaries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	functionaries := filepath.Join(keys, "functionaries.yaml")
	withKey := strings.Replace(string(fn), "  - name: builder\n", "  - name: builder\n    publicKey: builder.pub\n", 1)
	if err := os.WriteFile(functionaries, []byte(withKey), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, step, stderr string }{
		{"taskrun-secret.yaml", "secret-run.check", ""},
		{"pipelinerun-rbac.yaml", "announce.say", "ignoring 3 object(s)"},
		{"pipelinerun-finally.yaml", "report.summarize", ""},
		{"pipelinerun-projected.yaml", "fetch-the-recipe.fetch-and-write", ""},
	} {
		out := filepath.Join(t.TempDir(), "root.layout")
		r := ss(t, "layout", "create", "--pipeline", filepath.Join(dir, c.file), "--functionaries", functionaries,
			"--owner-key", filepath.Join(keys, "owner.key"), "--out", out)
		if r.code != 0 || !strings.Contains(r.stderr, c.stderr) {
			t.Fatalf("layout create %s:\n%s", c.file, r)
		}
		if s := ss(t, "layout", "show", out); s.code != 0 || !strings.Contains(s.stdout, c.step) {
			t.Errorf("layout of %s has no step %s:\n%s", c.file, c.step, s)
		}
	}
}

// A failing task does not stop the finally tasks: the report runs after the
// build failed, sees it, and its link is signed; the task consuming the
// failed build's result is skipped as Tekton skips it, and the run fails.
func TestRunFileFinallyAfterFailure(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := ss(t, "run", filepath.Join("test", "e2e", "testdata", "runs", "pipelinerun-finally.yaml"), "--out", out, "-p", "fail=yes")
	if r.code == 0 || !strings.Contains(r.stdout, "pipeline run failed") || !strings.Contains(r.stdout, "build.compile") {
		t.Fatalf("the failed build did not fail the run:\n%s", r)
	}
	for _, s := range []string{"build.compile", "report.summarize"} {
		linkFile(t, out, s)
	}
	if !strings.Contains(r.stdout, "announce skipped: Results were missing") {
		t.Errorf("the consumer of the failed build's result was not skipped:\n%s", r.stdout)
	}
	b, _ := os.ReadFile(filepath.Join(out, "work", "workspaces", "source", "report.txt"))
	if string(b) != "tasks: Failed; build: Failed (Failed)\n" {
		t.Errorf("report.txt = %q", b)
	}
	if r := inTotoVerify(t, out); r.code == 0 {
		t.Fatalf("in-toto-golang accepts a run whose build failed:\n%s", r)
	}
}

// A finally task its when expression skips is excused by the skip record
// the orchestrator signs: the run verifies, and in-toto-golang agrees.
func TestRunFileFinallySkippedVerifies(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "pipelinerun-finally.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	skipped := strings.Replace(string(src), `values: ["Succeeded", "Completed"]`, `values: ["Failed"]`, 1)
	if skipped == string(src) {
		t.Fatal("the test's edit no longer applies")
	}
	file := filepath.Join(dir, "run.yaml")
	os.WriteFile(file, []byte(skipped), 0o644)
	fn, _ := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"))
	os.WriteFile(filepath.Join(dir, "functionaries.yaml"), fn, 0o644)
	out := filepath.Join(dir, "out")
	r := ss(t, "run", file, "--out", out, "-q")
	if r.code != 0 || !strings.Contains(r.stdout, "announce skipped: When Expressions evaluated to false") ||
		!strings.Contains(r.stdout, "VERIFICATION PASSED") || !strings.Contains(r.stdout, "skip announce.print") {
		t.Fatalf("want the skip, excused by its skip record, and a passing verification:\n%s", r)
	}
	if r := inTotoVerify(t, out); r.code != 0 {
		t.Fatalf("in-toto-golang rejects the run with a skip record for announce.print:\n%s", r)
	}
}

// The flaky task of pipelinerun-retries.yaml without retries fails the
// run: no attempt links, and the failed step's link does not verify.
func TestRunFileNoRetriesFails(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repo, "test", "e2e", "testdata", "runs", "pipelinerun-retries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	doc := strings.Replace(string(src), "      retries: 1\n", "      retries: 0\n", 1)
	if doc == string(src) {
		t.Fatal("the test's edit no longer applies")
	}
	file := filepath.Join(dir, "run.yaml")
	os.WriteFile(file, []byte(doc), 0o644)
	out := filepath.Join(dir, "out")
	r := ss(t, "run", file, "--out", out, "--functionaries", filepath.Join(repo, "test", "e2e", "testdata", "runs", "functionaries.yaml"), "-q")
	if r.code == 0 || strings.Contains(r.stdout, "VERIFICATION PASSED") || !strings.Contains(r.stdout, "build.compile") {
		t.Fatalf("the flaky task without retries passed:\n%s", r)
	}
	if m, _ := filepath.Glob(filepath.Join(out, "links", "*.attempt-*.link")); len(m) > 0 {
		t.Errorf("attempt links without retries: %v", m)
	}
}

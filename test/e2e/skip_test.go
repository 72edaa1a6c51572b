package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// skipRuns runs pipelinerun-when-skip.yaml once with deploy=no (deploy,
// notify, audit and the finally task rollback skipped) and once with
// deploy=yes (only rollback skipped); the attacks mutate copies.
var skipRuns = struct {
	once     sync.Once
	no, yes  string
	noResult result
}{}

func skipRunOutputs(t *testing.T) (no, yes string) {
	t.Helper()
	skipRuns.once.Do(func() {
		// Outside t.TempDir: every test of the package reuses them.
		dir, err := os.MkdirTemp("", "stepseal-skip-")
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join("test", "e2e", "testdata", "runs", "pipelinerun-when-skip.yaml")
		for _, v := range []struct {
			out *string
			res *result
			arg string
		}{{&skipRuns.no, &skipRuns.noResult, "deploy=no"}, {&skipRuns.yes, new(result), "deploy=yes"}} {
			out := filepath.Join(dir, v.arg)
			r := ss(t, "run", file, "--out", out, "-p", v.arg)
			if r.code != 0 || !strings.Contains(r.stdout, "VERIFICATION PASSED") {
				t.Fatalf("stepseal run %s -p %s:\n%s", file, v.arg, r)
			}
			*v.out, *v.res = out, r
		}
	})
	if skipRuns.no == "" || skipRuns.yes == "" {
		t.Fatal("the skip runs did not complete (see the first test that ran them)")
	}
	return skipRuns.no, skipRuns.yes
}

// A pipeline whose when expressions skip tasks verifies: the orchestrator
// signs a skip record per step of each skipped task, and stepseal and
// in-toto-golang both accept the run; with the when input flipped, the
// tasks run and the run verifies too.
func TestRunSkippedTasksVerify(t *testing.T) {
	no, yes := skipRunOutputs(t)
	for _, c := range []struct {
		dir     string
		skipped []string
		ran     []string
	}{
		{no, []string{"deploy.push", "deploy.smoke", "notify.announce", "audit.record", "rollback.undo"}, []string{"build.compile", "package.tar", "cleanup.tidy"}},
		{yes, []string{"rollback.undo"}, []string{"build.compile", "deploy.push", "deploy.smoke", "notify.announce", "audit.record", "package.tar", "cleanup.tidy"}},
	} {
		r := ssVerify(t, c.dir, "-o", "json")
		var v struct {
			Passed bool
			Steps  []struct {
				Name    string
				Skipped string
				Passed  bool
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || !v.Passed || r.code != 0 {
			t.Fatalf("stepseal verify: %v\n%s", err, r)
		}
		got := map[string]string{}
		for _, s := range v.Steps {
			got[s.Name] = s.Skipped
		}
		for _, s := range c.skipped {
			if got[s] == "" {
				t.Errorf("%s: step %s not reported skipped: %v", c.dir, s, got)
			}
		}
		for _, s := range c.ran {
			if got[s] != "" {
				t.Errorf("%s: step %s reported skipped: %v", c.dir, s, got[s])
			}
		}
		if r := inTotoVerify(t, c.dir); r.code != 0 {
			t.Fatalf("in-toto-golang verify disagrees:\n%s", r)
		}
	}
	if out := skipRuns.noResult.stdout; !strings.Contains(out, `skip deploy.push`) || !strings.Contains(out, `"no" in ["yes"]`) {
		t.Errorf("the verdict does not show the skip and its recorded inputs:\n%s", out)
	}
}

// signedBody returns the "signed" object of a step's link.
func signedBody(t *testing.T, dir, step string) map[string]any {
	t.Helper()
	return readJSON(t, linkFile(t, dir, step))["signed"].(map[string]any)
}

// skipLike returns the skip record of step in the run from, made to pass
// for the link of step in the run dir: its run ID, and the materials and
// products of that link, so only the skip itself can give the forgery away.
func skipLike(t *testing.T, from, dir, step string) map[string]any {
	t.Helper()
	body, real := signedBody(t, from, step), signedBody(t, dir, step)
	for _, k := range []string{"environment", "materials", "products"} {
		body[k] = real[k]
	}
	return body
}

// forge signs body as step's link with the run's key name.
func forge(t *testing.T, dir, key, step string, body map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resign(t, dir, key, step, b)
}

// Each attack on skip records, with the exact rejection. Where
// in-toto-golang's model cannot tell a skip record from a link (it knows
// neither the readme's skippable rules nor skip records), it accepts; the
// test pins which.
func TestSkipRecordAttacks(t *testing.T) {
	no, yes := skipRunOutputs(t)
	cases := []struct {
		name      string
		from      string
		mutate    func(t *testing.T, dir string)
		category  string
		mention   []string
		inTotoToo bool // in-toto-golang rejects it as well
	}{
		{"skip record for a task with no when and no skipped parent", no, func(t *testing.T, dir string) {
			// package only runs after deploy; a when-expression skip does
			// not cascade, so the layout does not let package be skipped.
			body := signedBody(t, dir, "deploy.push")
			os.Remove(linkFile(t, dir, "package.tar"))
			body["name"] = "package.tar"
			forge(t, dir, "publisher", "package.tar", body)
		}, "skip", []string{"package", "does not let this task be skipped"}, true},
		{"skip record whose recorded inputs make the expression true", no, func(t *testing.T, dir string) {
			for _, step := range []string{"deploy.push", "deploy.smoke"} {
				body := signedBody(t, dir, step)
				when := body["byproducts"].(map[string]any)["stepseal.dev/skip"].(map[string]any)["when"].([]any)[0].(map[string]any)
				when["resolvedInput"] = "yes"
				os.Remove(linkFile(t, dir, step))
				forge(t, dir, "publisher", step, body)
			}
		}, "skip", []string{"deploy", "every when expression holds", `"yes" in ["yes"]`}, false},
		{"skip record whose expressions are not the layout's", no, func(t *testing.T, dir string) {
			for _, step := range []string{"deploy.push", "deploy.smoke"} {
				body := signedBody(t, dir, step)
				when := body["byproducts"].(map[string]any)["stepseal.dev/skip"].(map[string]any)["when"].([]any)[0].(map[string]any)
				when["values"] = []any{"never"}
				when["resolvedValues"] = []any{"never"}
				os.Remove(linkFile(t, dir, step))
				forge(t, dir, "publisher", step, body)
			}
		}, "skip", []string{"deploy", "the layout's is"}, false},
		{"skip record from a key that may not sign skip records", no, func(t *testing.T, dir string) {
			// The builder is a functionary of every step, but only the
			// orchestrator signs skip records.
			body := signedBody(t, dir, "rollback.undo")
			os.Remove(linkFile(t, dir, "rollback.undo"))
			forge(t, dir, "builder", "rollback.undo", body)
		}, "unauthorized", []string{"rollback.undo", "only key(s)"}, false},
		{"a task that has both links and a skip record", yes, func(t *testing.T, dir string) {
			for _, step := range []string{"deploy.push", "deploy.smoke"} {
				body := skipLike(t, no, dir, step)
				forge(t, dir, "publisher", step, body)
			}
		}, "skip", []string{"deploy", "also has link"}, false},
		{"a link deleted and replaced by a forged skip", yes, func(t *testing.T, dir string) {
			// The orchestrator's key, honest about the input: the
			// expression holds.
			for _, step := range []string{"deploy.push", "deploy.smoke"} {
				body := skipLike(t, no, dir, step)
				when := body["byproducts"].(map[string]any)["stepseal.dev/skip"].(map[string]any)["when"].([]any)[0].(map[string]any)
				when["resolvedInput"] = "yes"
				os.Remove(linkFile(t, dir, step))
				forge(t, dir, "publisher", step, body)
			}
		}, "skip", []string{"deploy", "every when expression holds"}, false},
		{"a link replaced by a forged skip that lies about its input", yes, func(t *testing.T, dir string) {
			// The orchestrator's key lies that deploy=no: notify, which
			// used deploy's result, ran, so Tekton cannot have skipped
			// deploy.
			for _, step := range []string{"deploy.push", "deploy.smoke"} {
				body := skipLike(t, no, dir, step)
				os.Remove(linkFile(t, dir, step))
				forge(t, dir, "publisher", step, body)
			}
		}, "skip", []string{"notify", `task "deploy", whose results it uses, was skipped`}, false},
		{"cascade from a parent that ran", yes, func(t *testing.T, dir string) {
			body := skipLike(t, no, dir, "audit.record")
			os.Remove(linkFile(t, dir, "audit.record"))
			forge(t, dir, "publisher", "audit.record", body)
		}, "skip", []string{"audit", `names task "notify", which was not skipped`}, false},
		{"skip record misstating $(tasks.status)", no, func(t *testing.T, dir string) {
			// deploy, notify and audit were skipped, so Tekton gives the
			// finally task "Completed", not "Succeeded".
			body := signedBody(t, dir, "rollback.undo")
			when := body["byproducts"].(map[string]any)["stepseal.dev/skip"].(map[string]any)["when"].([]any)[0].(map[string]any)
			when["resolvedInput"] = "Succeeded"
			os.Remove(linkFile(t, dir, "rollback.undo"))
			forge(t, dir, "publisher", "rollback.undo", body)
		}, "skip", []string{"rollback", `$(tasks.status) is recorded as "Succeeded", but the links show "Completed"`}, false},
		{"a link of a run signed by the key that only signs skip records", yes, func(t *testing.T, dir string) {
			body := signedBody(t, dir, "deploy.push")
			os.Remove(linkFile(t, dir, "deploy.push"))
			forge(t, dir, "publisher", "deploy.push", body)
		}, "unauthorized", []string{"deploy.push", "only to sign skip records"}, false},
		{"skip record for one step of a task that ran its other steps", no, func(t *testing.T, dir string) {
			os.Remove(linkFile(t, dir, "deploy.smoke"))
		}, "skip", []string{"deploy.smoke", "no skip record for this step"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, c.from)
			c.mutate(t, dir)
			expectRejected(t, ssVerify(t, dir, "-o", "json"), c.category, c.mention...)
			r := inTotoVerify(t, dir)
			if c.inTotoToo && r.code == 0 {
				t.Fatalf("in-toto-golang accepted: %s", r)
			}
			if !c.inTotoToo && r.code != 0 {
				t.Fatalf("in-toto-golang now rejects this attack too; update the test and the README's list of differences:\n%s", r)
			}
		})
	}
}

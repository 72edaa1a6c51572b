package generate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Finally tasks are layout steps after the DAG's; for a workspace a finally
// task binds, its prev is the last step of the DAG tasks binding it that no
// other such task comes after (here build, not fetch, which build follows).
func TestFinallyRules(t *testing.T) {
	l, _ := generate(t, "../../../test/e2e/testdata/runs/pipelinerun-finally.yaml", "../../../test/e2e/testdata/runs/functionaries.yaml")
	var names []string
	for _, s := range l.Steps {
		names = append(names, s.Name)
	}
	if d := cmp.Diff([]string{"fetch.checkout", "build.compile", "report.summarize", "announce.print"}, names); d != "" {
		t.Fatalf("steps (-want +got):\n%s", d)
	}
	report, announce := l.Steps[2], l.Steps[3]
	want := [][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "build.compile"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, report.ExpectedMaterials); d != "" {
		t.Errorf("report.summarize materials (-want +got):\n%s", d)
	}
	want = [][]string{{"ALLOW", "source/**"}, {"CREATE", "results/outcome"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, report.ExpectedProducts); d != "" {
		t.Errorf("report.summarize products (-want +got):\n%s", d)
	}
	want = [][]string{{"DISALLOW", "*"}}
	if d := cmp.Diff(want, announce.ExpectedMaterials); d != "" {
		t.Errorf("announce.print binds no workspace (-want +got):\n%s", d)
	}
}

// A finally task binding a workspace that parallel DAG branches write sees
// the last step of each; a read-only binding must leave it as they left it.
func TestFinallyParallelBranches(t *testing.T) {
	l, _ := generate(t, "testdata/finally-parallel.yaml", "testdata/finally-functionaries.yaml")
	byName := map[string][][]string{}
	products := map[string][][]string{}
	for _, s := range l.Steps {
		byName[s.Name] = s.ExpectedMaterials
		products[s.Name] = s.ExpectedProducts
	}
	want := [][]string{
		{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "left.b"},
		{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "right.a"},
		{"DISALLOW", "*"},
	}
	if d := cmp.Diff(want, byName["collect.first"]); d != "" {
		t.Errorf("collect.first materials (-want +got):\n%s", d)
	}
	want = [][]string{{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "collect.first"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, byName["collect.second"]); d != "" {
		t.Errorf("collect.second materials (-want +got):\n%s", d)
	}
	want = [][]string{{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "audit.check"}, {"DISALLOW", "*"}}
	if d := cmp.Diff(want, byName["audit.check"]); d != "" {
		t.Errorf("audit.check (read-only) materials (-want +got):\n%s", d)
	}
	want = [][]string{
		{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "left.b"},
		{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "right.a"},
		{"DISALLOW", "*"},
	}
	if d := cmp.Diff(want, products["audit.check"]); d != "" {
		t.Errorf("audit.check (read-only) products (-want +got):\n%s", d)
	}
}

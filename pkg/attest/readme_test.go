package attest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
)

func TestSkippableLinesRoundTrip(t *testing.T) {
	rules := []attest.SkipRule{
		{Task: "deploy", Steps: []string{"deploy.push", "deploy.smoke"}, Keys: []string{"k1"}, SkipOnlyKeys: []string{"k1"},
			When: []run.When{{Input: "$(params.deploy)", Operator: "in", Values: []string{"yes"}}}},
		{Task: "notify", Steps: []string{"notify.announce"}, Keys: []string{"k1"}, ResultsFrom: []string{"deploy"}},
		{Task: "gate", Steps: []string{"gate.check"}, Keys: []string{"k1"}, When: []run.When{{CEL: "'a' == 'b'"}}},
	}
	lines, err := attest.SkippableLines(rules)
	if err != nil {
		t.Fatal(err)
	}
	d, err := attest.ParseReadme("free text\n" + lines + attest.ReadmeOnErrorContinue + "deploy.smoke\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Skippable) != 3 || d.Skippable[0].Task != "deploy" || d.Skippable[1].ResultsFrom[0] != "deploy" ||
		d.Skippable[2].When[0].CEL == "" || d.OnErrorContinue[0] != "deploy.smoke" {
		t.Fatalf("round trip: %+v", d)
	}
}

// A skippable line a verifier cannot read exactly is refused, never
// ignored: the readme is signed, and dropping a rule would change the verdict.
func TestSkippableLinesRefused(t *testing.T) {
	ok := `{"task":"deploy","steps":["deploy.push"],"keys":["k1"]}`
	for name, line := range map[string]string{
		"unknown field":            `{"task":"deploy","steps":["deploy.push"],"keys":["k1"],"always":true}`,
		"no keys":                  `{"task":"deploy","steps":["deploy.push"],"keys":[]}`,
		"no steps":                 `{"task":"deploy","keys":["k1"]}`,
		"no task":                  `{"steps":["deploy.push"],"keys":["k1"]}`,
		"trailing data":            ok + ` {}`,
		"not json":                 `deploy`,
		"skip-only key not a key":  `{"task":"deploy","steps":["deploy.push"],"keys":["k1"],"skipOnlyKeys":["k2"]}`,
		"resolved input in layout": `{"task":"deploy","steps":["deploy.push"],"keys":["k1"],"when":[{"input":"a","operator":"in","values":["b"],"resolvedInput":"b"}]}`,
		"cel and operator":         `{"task":"deploy","steps":["deploy.push"],"keys":["k1"],"when":[{"cel":"true","operator":"in"}]}`,
		"two rules for a task":     ok + "\n" + attest.ReadmeSkippable + `{"task":"deploy","steps":["deploy.other"],"keys":["k1"]}`,
		"a step in two rules":      ok + "\n" + attest.ReadmeSkippable + `{"task":"other","steps":["deploy.push"],"keys":["k1"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := attest.ParseReadme(attest.ReadmeSkippable + line)
			if !errors.Is(err, attest.ErrReadme) {
				t.Fatalf("want ErrReadme, got %v", err)
			}
		})
	}
}

func FuzzParseReadme(f *testing.F) {
	lines, _ := attest.SkippableLines([]attest.SkipRule{{Task: "deploy", Steps: []string{"deploy.push"}, Keys: []string{"k1"},
		When: []run.When{{Input: "$(params.deploy)", Operator: "in", Values: []string{"yes"}}}}})
	f.Add(lines)
	f.Add(attest.ReadmeOnErrorContinue + "a.b\n" + lines)
	f.Add("text\n" + attest.ReadmeSkippable + `{"task":"x","steps":["x.y"],"keys":["k"],"parents":["p"]}`)
	f.Fuzz(func(t *testing.T, readme string) {
		d, err := attest.ParseReadme(readme)
		if err != nil {
			return
		}
		// What parses re-encodes to lines that parse to the same rules.
		again, err := attest.SkippableLines(d.Skippable)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := attest.ParseReadme(again)
		if err != nil || len(d2.Skippable) != len(d.Skippable) {
			t.Fatalf("re-encoded rules do not parse back: %v\n%s", err, again)
		}
		for _, r := range d.Skippable {
			if r.Task == "" || len(r.Steps) == 0 || len(r.Keys) == 0 || strings.Contains(r.Task, "\n") {
				t.Fatalf("accepted an incomplete rule %+v", r)
			}
		}
	})
}

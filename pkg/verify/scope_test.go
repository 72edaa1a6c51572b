package verify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
)

// A gate in the middle of a pipeline verifies the steps of the tasks that
// ran before it (Options.Steps): the later steps are neither required nor
// read, an in-scope step without a link still fails, and a rule that
// needs an artifact from a step out of scope refuses it.
func TestScope(t *testing.T) {
	c := newChain(t)
	delete(c.signers, "build.compile") // not run yet
	c.extra = Memory{"build.compile.00000000.link": []byte("not a link")}
	layout, links := c.build()

	v, err := ours(t, layout, links, Options{RunID: "run-1"})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(failureText(v), `"build.compile"`) {
		t.Fatalf("without a scope: want build.compile refused, got %v", err)
	}

	v, err = ours(t, layout, links, Options{RunID: "run-1", Steps: []string{"fetch", "test.unit"}})
	if err != nil {
		t.Fatalf("scope fetch, test.unit: %v", err)
	}
	if len(v.Steps) != 2 || v.Steps[0].Name != "fetch.copy" || v.Steps[1].Name != "test.unit" || len(v.Scope) != 2 {
		t.Fatalf("verdict steps %+v scope %v", v.Steps, v.Scope)
	}

	// An in-scope step with no link is missing, named.
	delete(c.signers, "test.unit")
	layout, links = c.build()
	v, err = ours(t, layout, links, Options{RunID: "run-1", Steps: []string{"fetch", "test"}})
	var ms *MissingStepError
	if !errors.As(err, &ms) || ms.Step != "test.unit" || len(v.Failures) != 1 {
		t.Fatalf("want test.unit missing, got %v", err)
	}

	// test.unit's products must MATCH fetch.copy's: with fetch out of
	// scope nothing matches, and DISALLOW refuses them.
	c = newChain(t)
	layout, links = c.build()
	_, err = ours(t, layout, links, Options{RunID: "run-1", Steps: []string{"test.unit"}})
	if !errors.Is(err, ErrArtifactRule) {
		t.Fatalf("scope test.unit alone: want an artifact rule failure, got %v", err)
	}

	// Another run's links in scope are refused as ever.
	_, err = ours(t, layout, links, Options{RunID: "run-2", Steps: []string{"fetch"}})
	if !errors.Is(err, ErrRunMismatch) {
		t.Fatalf("want run mismatch, got %v", err)
	}

	// A scope naming nothing of the layout is the caller's mistake: no verdict.
	v, err = Layout(context.Background(), layout, []signing.Verifier{verifier(t, "owner")}, links,
		Options{WithoutArtifactUnsafe: true, Steps: []string{"deploy"}})
	if v != nil || !errors.Is(err, ErrScope) || !strings.Contains(err.Error(), `"deploy"`) {
		t.Fatalf("unknown scope: verdict %v, err %v", v, err)
	}
}

func TestScopeSteps(t *testing.T) {
	steps := []string{"fetch.copy", "test.unit", "test.lint", "build.compile"}
	got, err := ScopeSteps(steps, []string{"build.compile", "test"})
	if err != nil || strings.Join(got, ",") != "test.unit,test.lint,build.compile" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ScopeSteps(steps, []string{"test.uni"}); !errors.Is(err, ErrScope) {
		t.Fatalf("prefix of a step: %v", err)
	}
	if StepOfLink("test.unit.abcd1234.link") != "test.unit" || StepOfLink("test.unit.abcd1234.attempt-1.link") != "" {
		t.Fatal("StepOfLink")
	}
}

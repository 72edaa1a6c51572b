package generate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/layout"
)

const onErrorPipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: lint}
spec:
  params: [{name: mode, default: continue}]
  tasks:
  - name: test
    taskSpec:
      steps:
      - {name: vet, image: golang, onError: continue, command: [go, vet]}
      - {name: unit, image: golang, onError: stopAndFail, command: [go, test]}
      - {name: race, image: golang, command: [go, test, -race]}
  - name: build
    runAfter: [test]
    taskSpec:
      steps:
      - {name: lint, image: golang, onError: ONERROR, command: [golangci-lint, run]}
`

// Steps with onError: continue are named in the signed readme, so the
// verifier lets them fail; every other step must succeed. An onError taken
// from a parameter cannot be decided before the run: refused.
func TestOnErrorContinueInReadme(t *testing.T) {
	dir := t.TempDir()
	functionaries := filepath.Join(dir, "functionaries.yaml")
	if err := os.WriteFile(functionaries, []byte(`apiVersion: stepseal.dev/v1alpha1
kind: Functionaries
metadata: {name: lint}
spec:
  functionaries: [{name: tester}, {name: builder}]
  steps:
  - {match: "test.*", functionaries: [tester]}
  - {match: "build.*", functionaries: [builder]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(onError string) string {
		p := filepath.Join(t.TempDir(), "pipeline.yaml")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(onErrorPipeline, "ONERROR", onError)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l, _ := generate(t, write("continue"), functionaries)
	d, err := attest.ParseReadme(l.Readme)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.OnErrorContinue, ","); got != "build.lint,test.vet" {
		t.Fatalf("steps that may fail: %q, want build.lint,test.vet (readme %q)", got, l.Readme)
	}
	if err := layout.Validate(*l); err != nil {
		t.Fatal(err)
	}
	spec, f := loadPipeline(t, write("$(params.mode)"), functionaries)
	_, err = FromPipeline(spec, f, testKeys(t, f), layout.Options{Expires: testExpiry})
	if !errors.Is(err, layout.ErrLayout) || !strings.Contains(err.Error(), `step "lint": onError "$(params.mode)"`) {
		t.Fatalf("onError from a parameter: %v, want ErrLayout naming the step", err)
	}
	// A readme naming a step the layout lacks is invalid.
	l.Readme += attest.OnErrorContinueLines([]string{"deploy.push"})
	if err := layout.Validate(*l); !errors.Is(err, layout.ErrLayout) || !strings.Contains(err.Error(), "deploy.push") {
		t.Fatalf("Validate: %v", err)
	}
}

package attest_test

import (
	"testing"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/run"
)

func TestRefusalsMatchReasons(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    func() error
		reason *reject.Reason
	}{
		{"provenance of a run that produced nothing", func() error {
			rec := &run.Record{RunID: "run-1", Tasks: []run.Task{{PipelineTask: "t", Steps: []run.Step{{Name: "t.noop"}}}}}
			_, _, err := attest.Subjects(rec, attest.ProvenanceOptions{})
			return err
		}, reject.ErrMissing},
		{"readme directive stepseal does not know", func() error {
			_, err := attest.ParseReadme(attest.ReadmeDirectivePrefix + "skip-verification: build")
			return err
		}, reject.ErrMalformed},
		{"readme directive naming a step twice", func() error {
			_, err := attest.ParseReadme(attest.ReadmeOnErrorContinue + "lint\n" + attest.ReadmeOnErrorContinue + "lint")
			return err
		}, reject.ErrMalformed},
	} {
		rejecttest.Is(t, c.name, c.err(), c.reason)
	}
}

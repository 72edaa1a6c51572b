package localrun

import (
	"context"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/run"
)

// writeLinks signs the step's link with each of its signers into LinkDir.
func (r *runner) writeLinks(ctx context.Context, step *run.Step) error {
	_, err := record.WriteLinks(ctx, r.opts.LinkDir, attest.Link(r.rec, *step), r.signers[step.Name])
	return err
}

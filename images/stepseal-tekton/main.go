// Command stepseal-tekton is the part of stepseal that links Tekton's own
// packages: the full stepseal command tree, with `stepseal run` (the local
// runner, pkg/localrun) and `stepseal layout create` (pkg/layout/generate)
// implemented. The stepseal binary execs it, with the same arguments, for
// those two commands, so that its other commands start without Tekton's
// types, reconciler packages and the cloud SDKs they pull in. Install it next
// to stepseal or on PATH; run directly, it behaves as stepseal.
package main

import (
	"context"
	"errors"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/images/stepseal/cmd"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/layout/generate"
	"github.com/stepseal/stepseal/pkg/localrun"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/tekton"
)

func main() { cmd.Main(tektonPipelines{}) }

// tektonPipelines implements cmd.Tekton with pkg/tekton, pkg/layout/generate
// and pkg/localrun.
type tektonPipelines struct{}

func (tektonPipelines) Load(ctx context.Context, pipeline, tasks string) (cmd.Pipeline, error) {
	spec, err := tekton.Load(ctx, pipeline, tasks)
	if err != nil {
		return nil, err
	}
	return pipelineSpec{spec}, nil
}

type pipelineSpec struct{ spec *tekton.Spec }

func (p pipelineSpec) Name() string { return p.spec.Pipeline.Name }

func (p pipelineSpec) Layout(f *layout.Functionaries, keys map[string]in_toto.Key, opts layout.Options) (*in_toto.Layout, error) {
	return generate.FromPipeline(p.spec, f, keys, opts)
}

func (p pipelineSpec) Run(ctx context.Context, o cmd.LocalRunOptions) (*run.Record, error) {
	rec, err := localrun.Run(ctx, p.spec, localrun.Options{
		Params:            o.Params,
		WorkDir:           o.WorkDir,
		LinkDir:           o.LinkDir,
		Signers:           o.Signers,
		Exclude:           o.Exclude,
		Out:               o.Out,
		Quiet:             o.Quiet,
		RunID:             o.RunID,
		DefaultWorkingDir: o.DefaultWorkingDir,
	})
	if errors.Is(err, localrun.ErrInvalid) {
		err = invalidRun{err}
	}
	return rec, err
}

// invalidRun makes a localrun.ErrInvalid error match cmd.ErrInvalidRun too,
// its message unchanged.
type invalidRun struct{ error }

func (e invalidRun) Is(target error) bool { return target == cmd.ErrInvalidRun }
func (e invalidRun) Unwrap() error        { return e.error }

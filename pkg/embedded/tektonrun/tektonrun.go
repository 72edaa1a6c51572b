package tektonrun

import (
	"context"
	"errors"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/embedded"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/layout/generate"
	"github.com/stepseal/stepseal/pkg/localrun"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// Tekton implements embedded.Tekton.
type Tekton struct{}

var _ embedded.Tekton = Tekton{}

// Load implements embedded.Tekton.
func (Tekton) Load(ctx context.Context, path, tasks string) (embedded.Pipeline, error) {
	spec, err := tekton.Load(ctx, path, tasks)
	if err != nil {
		return nil, err
	}
	return pipelineSpec{spec}, nil
}

type pipelineSpec struct{ spec *tekton.Spec }

func (p pipelineSpec) Name() string { return p.spec.Pipeline.Name }

func (p pipelineSpec) Notes() []string { return p.spec.Notes }

func (p pipelineSpec) Sources() []string { return p.spec.Files }

func (p pipelineSpec) WorkspaceDir(w string) string { return p.spec.WorkspaceDir(w) }

func (p pipelineSpec) Layout(f *layout.Functionaries, keys map[string]in_toto.Key, opts layout.Options) (*in_toto.Layout, error) {
	if opts.Commands == nil {
		// The commands the links will record, as far as the run's params
		// and ID tell: then a clean run gives in-toto no command warnings.
		// A Pipeline that cannot be planned without the run's input (a
		// required param not given) keeps the commands as written.
		if cmds, err := localrun.Commands(context.Background(), p.spec, localrun.Options{Params: opts.Params, RunID: opts.RunID}); err == nil {
			opts.Commands = cmds
		}
	}
	return generate.FromPipeline(p.spec, f, keys, opts)
}

func (p pipelineSpec) Run(ctx context.Context, o embedded.RunOptions) (*run.Record, error) {
	rec, err := localrun.Run(ctx, p.spec, localrun.Options{
		Params:            o.Params,
		WorkDir:           o.WorkDir,
		LinkDir:           o.LinkDir,
		Signers:           o.Signers,
		SkipSigner:        o.SkipSigner,
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

// invalidRun makes a localrun.ErrInvalid error match embedded.ErrInvalidRun
// too, its message unchanged.
type invalidRun struct{ error }

func (e invalidRun) Is(target error) bool { return target == embedded.ErrInvalidRun }
func (e invalidRun) Unwrap() error        { return e.error }

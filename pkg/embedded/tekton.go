package embedded

import (
	"context"
	"errors"
	"io"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Tekton is what the embedded default needs of Tekton's own packages (the
// Pipeline types, the reconciler's substitution and validation code):
// loading a Pipeline with its Tasks, generating its layout, running it on
// this host. Linking those packages costs every start of a program tens of
// megabytes and hundreds of package initialisers, so this package does not
// import them: package tektonrun implements Tekton with them, and only the
// programs that run pipelines link it.
type Tekton interface {
	// Load reads a Tekton v1 Pipeline, PipelineRun or TaskRun file and the
	// objects it references from the same file, the tasks directory (may
	// be empty) and the files beside it (tekton.Load).
	Load(ctx context.Context, path, tasks string) (Pipeline, error)
}

// Pipeline is a loaded Pipeline with its Tasks, and the run bindings of a
// run file.
type Pipeline interface {
	// Name is the Pipeline's metadata.name.
	Name() string
	// Notes are progress lines about what loading left out (ignored
	// objects and fields), to be printed before the run.
	Notes() []string
	// Sources are the files the run and its Pipeline, Tasks and workspace
	// objects were read from: the run's definition in its provenance.
	Sources() []string
	// WorkspaceDir is where pipeline workspace w lives, slash-separated
	// and relative to RunOptions.WorkDir.
	WorkspaceDir(w string) string
	// Layout generates the Pipeline's in-toto layout (generate.FromPipeline).
	Layout(f *layout.Functionaries, keys map[string]in_toto.Key, opts layout.Options) (*in_toto.Layout, error)
	// Run runs the Pipeline on this host (localrun.Run). Its error matches
	// ErrInvalidRun when the run was refused as invalid input, and a failed
	// step's matches *record.StepError.
	Run(ctx context.Context, opts RunOptions) (*run.Record, error)
}

// RunOptions are the local runner's options the embedded default sets; see
// localrun.Options.
type RunOptions struct {
	Params            map[string]string
	WorkDir, LinkDir  string
	Signers           func(step string) ([]signing.Signer, error)
	SkipSigner        signing.Signer
	Exclude           []string
	Out               io.Writer
	Quiet             bool
	RunID             string
	DefaultWorkingDir string
}

// ErrInvalidRun is matched by a Pipeline.Run error when the runner refused
// the pipeline as given, before any step ran.
var ErrInvalidRun = errors.New("invalid pipeline run")

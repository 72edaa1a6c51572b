package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TektonBinary is the executable that `stepseal run` and `stepseal layout
// create` hand over to when this program was built without Tekton: the same
// command tree built with it (images/stepseal-tekton).
const TektonBinary = "stepseal-tekton"

// Tekton is what `stepseal run` and `stepseal layout create` need of
// Tekton's own packages (the Pipeline types, the reconciler's substitution
// and validation code): loading a Pipeline with its Tasks, generating its
// layout, running it on this host. Linking those packages costs every start
// of the program tens of megabytes and hundreds of package initialisers, so
// the stepseal binary is built without them (New(nil)) and execs
// TektonBinary for those two commands; images/stepseal-tekton passes the
// implementation.
type Tekton interface {
	// Load reads a Tekton v1 Pipeline file and the Tasks it references
	// from the tasks directory (may be empty).
	Load(ctx context.Context, pipeline, tasks string) (Pipeline, error)
}

// Pipeline is a loaded Pipeline with its Tasks.
type Pipeline interface {
	// Name is the Pipeline's metadata.name.
	Name() string
	// Layout generates the Pipeline's in-toto layout (generate.FromPipeline).
	Layout(f *layout.Functionaries, keys map[string]in_toto.Key, opts layout.Options) (*in_toto.Layout, error)
	// Run runs the Pipeline on this host (localrun.Run). Its error matches
	// ErrInvalidRun when the run was refused as invalid input, and a failed
	// step's matches *record.StepError.
	Run(ctx context.Context, opts LocalRunOptions) (*run.Record, error)
}

// LocalRunOptions are the localrun.Options `stepseal run` sets; see there.
type LocalRunOptions struct {
	Params            map[string]string
	WorkDir, LinkDir  string
	Signers           func(step string) ([]signing.Signer, error)
	Exclude           []string
	Out               io.Writer
	Quiet             bool
	RunID             string
	DefaultWorkingDir string
}

// ErrInvalidRun is matched by a Pipeline.Run error that is localrun's
// ErrInvalid: the pipeline cannot run as given.
var ErrInvalidRun = errors.New("invalid pipeline run")

// execTekton replaces this process with TektonBinary, given the same
// arguments: the command runs there exactly as it would here, with the same
// output, exit status and signal handling (it is the same process). It
// returns only if TektonBinary cannot be found or started.
func (ro *rootOptions) execTekton(ctx context.Context, command string) error {
	if err := ctx.Err(); err != nil {
		return err // interrupted before the handover
	}
	path, err := findTekton()
	if err != nil {
		return fmt.Errorf("%s needs %s, the part of stepseal that links Tekton's packages: %w", command, TektonBinary, err)
	}
	argv := append([]string{path}, ro.args...)
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("%s: starting %s: %w", command, path, err)
	}
	return nil
}

// findTekton looks for TektonBinary next to this executable, then on PATH.
func findTekton() (string, error) {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	where := "on PATH"
	if err == nil {
		p := filepath.Join(filepath.Dir(self), TektonBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
		where = "next to " + self + " or on PATH"
	}
	if p, err := exec.LookPath(TektonBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("not found %s (make build builds both into bin/; go build -o DIR ./images/%s builds it alone)", where, TektonBinary)
}

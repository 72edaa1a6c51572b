package cmd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/embedded"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/tlog"
	"k8s.io/client-go/rest"
)

// TektonBinary is the executable that `stepseal run` and `stepseal layout
// create` hand over to when this program was built without Tekton: the same
// command tree built with it (images/stepseal-tekton).
const TektonBinary = "stepseal-tekton"

// Tekton implements `stepseal run` and `stepseal layout create` with
// Tekton's own packages (see embedded.Tekton). The stepseal binary is built
// without it (New(nil)) and execs TektonBinary for those two commands;
// images/stepseal-tekton passes tektonrun.Tekton.
type Tekton = embedded.Tekton

// InCluster serves the admission webhook as the release's Deployment runs
// it (incluster.Run, pkg/admission/incluster). The stepseal binary is built
// without it and execs TektonBinary for `admission serve
// --policy-configmap`, so that it links neither client-go's typed
// clientset nor knative's controllers; images/stepseal-tekton passes
// WithInCluster(incluster.Run).
type InCluster func(ctx context.Context, cfg *rest.Config, o admission.RunOptions) error

// AWSLog opens a served log on Tessera's AWS driver (awslog.Open,
// pkg/logserver/awslog) for `log serve --storage aws`. The stepseal binary
// is built without it, so that it does not link the AWS SDK, and execs
// TektonBinary for that command; images/stepseal-tekton passes
// WithAWSLog(awslog.Open).
type AWSLog func(ctx context.Context, cfg logserver.AWSConfig) (*tlog.Storage, error)

// WithAWSLog makes `log serve --storage aws` open its log with f.
func WithAWSLog(f AWSLog) Option { return func(ro *rootOptions) { ro.awsLog = f } }

// Option configures what the command tree of New and Main implements
// itself rather than handing over to TektonBinary.
type Option func(*rootOptions)

// WithInCluster makes `admission serve --policy-configmap` run f.
func WithInCluster(f InCluster) Option { return func(ro *rootOptions) { ro.inCluster = f } }

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

package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

type rootOptions struct {
	output string
	// tekton implements run and layout create; nil: they exec TektonBinary.
	tekton Tekton
	// args are the command line's arguments, handed on to TektonBinary.
	args []string
	// inCluster serves `admission serve --policy-configmap`; nil: it execs
	// TektonBinary.
	inCluster InCluster
	// awsLog opens `log serve --storage aws`'s log; nil: it execs
	// TektonBinary.
	awsLog AWSLog
}

// New returns the stepseal root command for the arguments args (without
// the program name). t implements `stepseal run` and `stepseal layout
// create`; with nil they exec TektonBinary, given args.
func New(t Tekton, args []string, opts ...Option) *cobra.Command {
	ro := &rootOptions{tekton: t, args: args}
	for _, o := range opts {
		o(ro)
	}
	root := &cobra.Command{
		Use:           "stepseal",
		Short:         "Supply-chain security for Tekton: every step signed as in-toto, verified against a layout",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if ro.output != "text" && ro.output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", ro.output)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&ro.output, "output", "o", "text", "output format: text or json")
	root.SetArgs(args)
	root.AddCommand(newKeys(ro), newLayout(ro), newRun(ro), newRecord(ro), newVerify(ro), newPublish(ro), newPull(ro), newCrypt(ro), newPolicy(ro), newLog(ro), newTrust(ro), newVSA(ro), newRekor(ro), newExport(ro), newAdmission(ro), newVersion(ro))
	return root
}

// print writes v as indented JSON when --output json, or calls text otherwise.
func (ro *rootOptions) print(w io.Writer, v any, text func(io.Writer)) error {
	if ro.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(w)
	return nil
}

// reportedError is an error whose explanation was already printed (a
// verification verdict): main exits non-zero without repeating it.
type reportedError struct{ err error }

func (e reportedError) Error() string { return e.err.Error() }
func (e reportedError) Unwrap() error { return e.err }

// statusError ends the command with exit status code (the recorded
// command's own, for `stepseal record`).
type statusError struct {
	err  error
	code int
}

func (e statusError) Error() string { return e.err.Error() }
func (e statusError) Unwrap() error { return e.err }

// ExitCode is the exit status err calls for: the one it carries, else 1.
func ExitCode(err error) int {
	var s statusError
	if errors.As(err, &s) && s.code > 0 && s.code < 256 {
		return s.code
	}
	return 1
}

// IsReported reports whether err was already explained to the user.
func IsReported(err error) bool {
	var r reportedError
	return errors.As(err, &r)
}

// OneLine folds an error message onto one line.
func OneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

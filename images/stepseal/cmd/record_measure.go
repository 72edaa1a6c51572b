package cmd

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/record"
)

// newRecordMeasure is `stepseal record start` (kind materials) or
// `stepseal record stop` (kind products): what the stepseal-record-start
// and stepseal-record-stop StepActions run around a user's step. No key:
// the controller signs.
func newRecordMeasure(kind string) *cobra.Command {
	var o record.MeasureOptions
	var resultFile string
	use, short := "start", "Measure the workspace before a step (materials): print the measurement, write its digest as a step result"
	if kind == record.KindProducts {
		use, short = "stop", "Measure the workspace after a step (products, and its exit code): print the measurement, write its digest as a step result"
	}
	c := &cobra.Command{
		Use:   use + " --step NAME --result-file FILE --taskrun-uid UID [--exit-code-file FILE] -- PATH... [--exclude PATTERN...]",
		Short: short,
		Long: `Run inside a Tekton step (the stepseal-record-start/stop StepActions), around
the user's step it measures. Each PATH is NAME=/dir (files recorded as
NAME/<relative path>, NAME being the workspace name the layout uses) or an
absolute path. After the paths, "--exclude" starts the in-toto-run exclude
patterns. The measurement document goes to stdout as one line of JSON, its
sha256 to --result-file; the stepseal controller reads both back and signs the
step's link. Nothing here holds or needs a key. stop first waits until the
first whole second at least 0.5 s after it started (0.5-1.5 s), so that the
controller can tell from Tekton's whole-second status that the measured step's
container had exited before hashing began.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Kind = kind
			if i := slices.Index(args, "--exclude"); i >= 0 {
				o.Paths, o.Exclude = args[:i], args[i+1:]
			} else {
				o.Paths = args
			}
			if len(o.Paths) == 0 {
				return fmt.Errorf("no path to measure")
			}
			_, err := record.Emit(cmd.Context(), o, cmd.OutOrStdout(), resultFile)
			return err
		},
	}
	c.Flags().StringVar(&o.Step, "step", "", "name of the measured step in the Task")
	c.Flags().StringVar(&resultFile, "result-file", "", "file receiving the measurement's sha256 ($(step.results.NAME.path))")
	c.Flags().StringVar(&o.TaskRun, "taskrun", "", "TaskRun name ($(context.taskRun.name))")
	c.Flags().StringVar(&o.TaskRunUID, "taskrun-uid", "", "TaskRun UID ($(context.taskRun.uid))")
	if kind == record.KindProducts {
		c.Flags().StringVar(&o.ExitCodeFile, "exit-code-file", "", "file holding the measured step's exit code ($(steps.step-NAME.exitCode.path))")
	}
	return c
}

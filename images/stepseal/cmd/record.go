package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/seal"
)

type recordReport struct {
	Step      string   `json:"step"`
	ExitCode  int      `json:"exitCode"`
	Links     []string `json:"links"`
	Materials int      `json:"materials"`
	Products  int      `json:"products"`
}

func newRecord(ro *rootOptions) *cobra.Command {
	var step, out, runID, pipeline, image string
	var keys, materials, products, exclude []string
	var noCommand bool
	c := &cobra.Command{
		Use:   "record --step NAME --key KEY [--materials PATH...] [--products PATH...] [--out DIR] -- CMD...",
		Short: "Record one step: hash materials, run CMD, hash products, write the signed link (like in-toto-run)",
		Long: `The in-step recorder, stepseal's in-toto-run, for use inside a step image.
Artifact names are those in-toto-run gives the same paths. The command's exit
status is propagated; its link is written even when it fails.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if step == "" || len(keys) == 0 {
				return fmt.Errorf("--step and --key are required")
			}
			if len(args) == 0 && !noCommand {
				return fmt.Errorf("no command given after --: pass one, or --no-command to only record artifacts")
			}
			signers, err := loadSigners(keys)
			if err != nil {
				return err
			}
			// With --output json stdout carries the report alone; the
			// command's own stdout goes to stderr.
			var cmdOut, reportOut io.Writer = os.Stdout, cmd.ErrOrStderr()
			if ro.output == "json" {
				cmdOut, reportOut = os.Stderr, cmd.OutOrStdout()
			}
			s, runErr := record.Command(cmd.Context(), record.Options{
				Step: step, Signers: signers, Materials: materials, Products: products,
				Exclude: exclude, Cmd: args, OutDir: out, RunID: runID, Pipeline: pipeline, Image: image,
				Stdout: cmdOut, Stderr: os.Stderr,
			})
			if s == nil {
				return runErr
			}
			r := recordReport{Step: step, ExitCode: s.ExitCode, Materials: len(s.Materials), Products: len(s.Products)}
			for _, sg := range signers {
				id, _ := sg.KeyID()
				r.Links = append(r.Links, seal.LinkName(step, id))
			}
			if err := ro.print(reportOut, r, func(w io.Writer) {
				fmt.Fprintf(w, "recorded %s: %d material(s), %d product(s), exit %d, link(s) %v\n", step, r.Materials, r.Products, r.ExitCode, r.Links)
			}); err != nil {
				return err
			}
			var se *record.StepError
			if errors.As(runErr, &se) {
				return statusError{reportedError{runErr}, se.ExitCode}
			}
			return runErr
		},
	}
	c.Flags().StringVar(&step, "step", "", "in-toto step name of the link")
	c.Flags().StringArrayVar(&keys, "key", nil, "private key to sign the link with (repeatable: one link per key)")
	c.Flags().StringArrayVarP(&materials, "materials", "m", nil, "file or directory hashed before the command (repeatable)")
	c.Flags().StringArrayVarP(&products, "products", "p", nil, "file or directory hashed after the command (repeatable)")
	c.Flags().StringArrayVarP(&exclude, "exclude", "e", nil, "gitignore-style pattern of paths not to record (repeatable)")
	c.Flags().StringVarP(&out, "out", "d", "", "directory to write the link to (default: current directory)")
	c.Flags().StringVar(&runID, "run-id", "", "stepseal.dev/run-id to bind the link to")
	c.Flags().StringVar(&pipeline, "pipeline", "", "pipeline name to record in the link")
	c.Flags().StringVar(&image, "image", "", "image the step runs in, recorded in the link")
	c.Flags().BoolVarP(&noCommand, "no-command", "x", false, "record artifacts without running a command")
	c.AddCommand(newRecordMeasure(record.KindMaterials), newRecordMeasure(record.KindProducts))
	return c
}

package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/signing"
)

func newLayout(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "layout", Short: "Generate, sign and show in-toto layouts"}
	c.AddCommand(newLayoutCreate(ro), newLayoutShow(ro), newLayoutRotateKey(ro), newLayoutRevokeKey(ro))
	return c
}

type layoutReport struct {
	Path    string   `json:"path"`
	Steps   int      `json:"steps"`
	Expires string   `json:"expires"`
	Owners  []string `json:"owners"`
}

func newLayoutCreate(ro *rootOptions) *cobra.Command {
	var pipeline, tasks, functionaries, out string
	var ownerKeys []string
	var expires string
	var force bool
	c := &cobra.Command{
		Use:   "create --pipeline FILE [--tasks DIR] --functionaries FILE --owner-key KEY... --out FILE [--expires DURATION] [--force]",
		Short: "Generate the in-toto layout of a Tekton Pipeline and sign it with the owners' keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pipeline == "" || functionaries == "" || out == "" || len(ownerKeys) == 0 {
				return fmt.Errorf("--pipeline, --functionaries, --owner-key and --out are required")
			}
			var validity time.Duration
			if cmd.Flags().Changed("expires") {
				d, err := layout.ParseExpiry(expires)
				if err != nil {
					return fmt.Errorf("--expires: %w", err)
				}
				validity = d
			}
			if _, err := os.Lstat(out); err == nil && !force {
				return fmt.Errorf("--out %s exists (use --force to replace it)", out)
			} else if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			ctx := cmd.Context()
			if ro.tekton == nil {
				return ro.execTekton(ctx, "stepseal layout create")
			}
			pl, err := ro.tekton.Load(ctx, pipeline, tasks)
			if err != nil {
				return err
			}
			for _, n := range pl.Notes() {
				fmt.Fprintln(cmd.ErrOrStderr(), n)
			}
			f, err := layout.LoadFunctionaries(functionaries)
			if err != nil {
				return err
			}
			keys, err := f.PublicKeys()
			if err != nil {
				return err
			}
			owners, err := loadSigners(ownerKeys)
			if err != nil {
				return err
			}
			opts := layout.Options{}
			if validity > 0 {
				opts.Expires = time.Now().Add(validity)
			}
			l, err := pl.Layout(f, keys, opts)
			if err != nil {
				return err
			}
			mb, err := layout.Sign(ctx, *l, owners...)
			if err != nil {
				return err
			}
			if err := layout.Write(out, mb); err != nil {
				return err
			}
			r := layoutReport{Path: out, Steps: len(l.Steps), Expires: l.Expires}
			for _, s := range mb.Signatures {
				r.Owners = append(r.Owners, s.KeyID)
			}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: %d steps, expires %s, signed by %d owner key(s)\n", out, r.Steps, r.Expires, len(r.Owners))
			})
		},
	}
	c.Flags().StringVar(&pipeline, "pipeline", "", "Tekton v1 Pipeline, PipelineRun or TaskRun YAML file (objects it references: same file, --tasks DIR, files beside it)")
	c.Flags().StringVar(&tasks, "tasks", "", "directory of Task YAML files the Pipeline references")
	c.Flags().StringVar(&functionaries, "functionaries", "", "functionaries file: who may perform which step")
	c.Flags().StringArrayVar(&ownerKeys, "owner-key", nil, "private key of a layout owner (repeatable; cosign keys read COSIGN_PASSWORD)")
	c.Flags().StringVar(&out, "out", "", "layout file to write")
	c.Flags().StringVar(&expires, "expires", "", "validity of the layout, a positive duration such as 720h or 30d (default: the functionaries file's spec.expires, else 30 days)")
	c.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	return c
}

func newLayoutShow(ro *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show FILE",
		Short: "Show a layout: its steps, who may perform them, and the artifact rules",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mb, err := layout.Load(args[0])
			if err != nil {
				return err
			}
			l, ok := mb.Signed.(in_toto.Layout)
			if !ok {
				return fmt.Errorf("%s is not a layout", args[0])
			}
			w := cmd.OutOrStdout()
			if ro.output == "json" {
				return layout.DescribeJSON(w, l)
			}
			fmt.Fprintf(w, "%s: signed by %d key(s)", args[0], len(mb.Signatures))
			for _, s := range mb.Signatures {
				fmt.Fprintf(w, " %.8s", s.KeyID)
			}
			fmt.Fprintln(w, " (signatures are checked by `stepseal verify`, not here)")
			return layout.Describe(w, l)
		},
	}
}

// loadSigners reads private key files; encrypted (cosign) keys take their
// password from COSIGN_PASSWORD or a prompt.
func loadSigners(paths []string) ([]signing.Signer, error) {
	out := make([]signing.Signer, 0, len(paths))
	for _, p := range paths {
		s, err := signing.LoadSigner(p, signing.EnvOrPrompt)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

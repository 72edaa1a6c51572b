package cmd

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/export"
)

func newExport(ro *rootOptions) *cobra.Command {
	var links, from, logKey, runID, out string
	c := &cobra.Command{
		Use:   "export (--links DIR | --from URL --log-key PUB --run-id ID) --out DIR",
		Short: "Write a run's signed attestations for GUAC's file collector",
		Long: `Write a run's DSSE attestations (provenance, VSAs) and Sigstore bundles into
--out, one file each (<name>.dsse.json, <name>.sigstore.json), the form
"guacone collect files DIR" ingests. The documents come from a run's directory
(--links: what stepseal run and stepseal rekor publish --out leave there) or
from a served log (--from with its public note key --log-key and --run-id:
every answer's inclusion proof verified). in-toto links and layouts are not
written (GUAC has no parser for them); they and any other file are listed as
skipped. --out must be absent or empty. Signatures are not checked here (GUAC
does not check them either): verify with stepseal verify / rekor verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			var docs []export.Doc
			var err error
			switch {
			case links != "" && from == "":
				docs, err = export.FromDir(links)
			case from != "" && links == "":
				if logKey == "" || runID == "" {
					return fmt.Errorf("--from needs --log-key (the served log's public note key) and --run-id")
				}
				vkey, rerr := limited.ReadFile(logKey, 16<<10)
				if rerr != nil {
					return fmt.Errorf("--log-key: %w", rerr)
				}
				docs, err = export.FromServedLog(cmd.Context(), from, string(vkey), runID, nil)
			default:
				return fmt.Errorf("one of --links DIR or --from URL is required")
			}
			if err != nil {
				return err
			}
			res, err := export.Write(out, docs)
			if err != nil {
				return err
			}
			return ro.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "exported %d document(s) to %s\n", len(res.Files), res.Dir)
				for _, f := range res.Files {
					fmt.Fprintf(w, "  %s  %s (%s) from %s\n", f.Path, f.Kind, f.PredicateType, f.Source)
				}
				for _, s := range res.Skipped {
					fmt.Fprintf(w, "  skipped %s: %s\n", s.Source, s.Reason)
				}
			})
		},
	}
	c.Flags().StringVar(&links, "links", "", "a run's directory (its links, provenance and bundles)")
	c.Flags().StringVar(&from, "from", "", "a served log (http(s)://host:port/ of stepseal log serve)")
	c.Flags().StringVar(&logKey, "log-key", "", "with --from: the served log's public note key file")
	c.Flags().StringVar(&runID, "run-id", "", "with --from: the run to export")
	c.Flags().StringVar(&out, "out", "", "the directory to write (absent or empty)")
	return c
}

package cmd

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/version"
)

func newVersion(ro *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go toolchain and the versions of the libraries verdicts rest on",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			info := version.Get()
			return ro.print(c.OutOrStdout(), info, func(w io.Writer) {
				fmt.Fprintf(w, "stepseal %s\n", info.Version)
				if info.Commit != "" {
					dirty := ""
					if info.Modified {
						dirty = " (modified)"
					}
					fmt.Fprintf(w, "commit    %s%s %s\n", info.Commit, dirty, info.CommitAt)
				}
				fmt.Fprintf(w, "go        %s %s\n", info.GoVersion, info.Platform)
				for _, m := range info.Modules {
					repl := ""
					if m.Replace != "" {
						repl = " => " + m.Replace
					}
					fmt.Fprintf(w, "%-50s %s%s\n", m.Path, m.Version, repl)
				}
			})
		},
	}
}

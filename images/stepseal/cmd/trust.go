package cmd

import "github.com/spf13/cobra"

// trustCommands are the subcommands of `stepseal trust`. Files that add
// some register them from an init function (trust_repo.go: the repository
// side), so each side adds its commands without editing this file.
var trustCommands []func(*rootOptions) *cobra.Command

func newTrust(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "trust", Short: "TUF trust: the repository that delegates artifacts to teams, and its clients"}
	for _, f := range trustCommands {
		c.AddCommand(f(ro))
	}
	return c
}

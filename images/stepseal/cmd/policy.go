package cmd

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

func newPolicy(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "policy", Short: "Sign platform policies"}
	c.AddCommand(newPolicySign(ro))
	return c
}

type policySignReport struct {
	Path     string   `json:"path"`
	Name     string   `json:"name"`
	Version  int64    `json:"version"`
	SignedBy []string `json:"signedBy"`
}

func newPolicySign(ro *rootOptions) *cobra.Command {
	var keys []string
	var out string
	c := &cobra.Command{
		Use:   "sign FILE --key KEY... --out FILE",
		Short: "Sign a platform policy: keys inlined, DSSE envelope signed by the owners",
		Long: `Sign a platform policy. Every platform key is inlined first (a signature over
a key file's path would not protect the key), metadata.version must be a
positive integer (clients refuse older versions), and the result is a DSSE
envelope that publish/pull/crypt read with --policy-key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 || out == "" {
				return fmt.Errorf("--key and --out are required")
			}
			pol, err := policy.Load(args[0], policy.Options{})
			if err != nil {
				return err
			}
			signers, err := loadSigners(keys)
			if err != nil {
				return err
			}
			env, err := policy.Sign(cmd.Context(), pol, signers...)
			if err != nil {
				return err
			}
			if err := signing.WriteFileAtomic(out, env, 0o644); err != nil {
				return err
			}
			r := policySignReport{Path: out, Name: pol.Name, Version: pol.Version}
			for _, s := range signers {
				id, _ := s.KeyID()
				r.SignedBy = append(r.SignedBy, id)
			}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: policy %q version %d, signed by %d owner key(s)\n", out, r.Name, r.Version, len(r.SignedBy))
			})
		},
	}
	c.Flags().StringArrayVar(&keys, "key", nil, "private key of a policy owner (repeatable)")
	c.Flags().StringVar(&out, "out", "", "signed policy to write")
	return c
}

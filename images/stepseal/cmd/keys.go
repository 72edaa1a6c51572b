package cmd

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/signing"
)

func newKeys(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "Manage signing keys"}
	c.AddCommand(newKeysGenerate(ro))
	return c
}

type keyReport struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	KeyID      string `json:"keyid"`
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
	Encrypted  bool   `json:"encrypted"`
}

func newKeysGenerate(ro *rootOptions) *cobra.Command {
	var out, name, typ string
	var cosign bool
	c := &cobra.Command{
		Use:   "generate --out DIR --name NAME [--type ed25519|ecdsa|rsa] [--cosign]",
		Short: "Generate a key pair: NAME.key (0600) and NAME.pub in DIR",
		Long: `Generate a key pair. The private key is PKCS#8 PEM, or with --cosign a
cosign-compatible encrypted key (password from COSIGN_PASSWORD or a prompt).
Key IDs are in-toto key IDs, as in-toto-golang computes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" || name == "" {
				return fmt.Errorf("--out and --name are required")
			}
			key, err := signing.Generate(signing.KeyType(typ))
			if err != nil {
				return err
			}
			var pw []byte
			if cosign {
				if pw, err = signing.EnvOrPrompt(true); err != nil {
					return err
				}
			}
			priv, pub, err := signing.WriteKeyPair(out, name, key, pw)
			if err != nil {
				return err
			}
			id, err := signing.KeyID(key.Public())
			if err != nil {
				return err
			}
			r := keyReport{Name: name, Type: typ, KeyID: id, PrivateKey: priv, PublicKey: pub, Encrypted: cosign}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s (private, 0600) and %s\nkey id %s (%s)\n", priv, pub, id, typ)
			})
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory to write the key pair to")
	c.Flags().StringVar(&name, "name", "", "file name of the key pair (NAME.key, NAME.pub)")
	c.Flags().StringVar(&typ, "type", "ed25519", "key type: ed25519, ecdsa (P-256) or rsa (3072)")
	c.Flags().BoolVar(&cosign, "cosign", false, "write a cosign-compatible encrypted private key")
	return c
}

package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
)

type keyChangeReport struct {
	Path    string   `json:"path"`
	Change  string   `json:"change"` // "rotated" or "revoked"
	KeyID   string   `json:"keyid"`
	NewKey  string   `json:"newKeyid,omitempty"`
	Log     string   `json:"log,omitempty"`
	LogSize uint64   `json:"logSize,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Expires string   `json:"expires"`
	Owners  []string `json:"owners"`
}

// keyChangeFlags are the flags rotate-key and revoke-key share.
type keyChangeFlags struct {
	layout, out, expires string
	ownerKeys            []string
	force                bool
}

func (f *keyChangeFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.layout, "layout", "", "signed layout to change (one of the --owner-key keys must have signed it)")
	c.Flags().StringArrayVar(&f.ownerKeys, "owner-key", nil, "private key of a layout owner (repeatable; cosign keys read COSIGN_PASSWORD)")
	c.Flags().StringVar(&f.out, "out", "", "layout file to write")
	c.Flags().StringVar(&f.expires, "expires", "", "validity of the new layout from now, e.g. 720h or 30d (default: the layout's expiry)")
	c.Flags().BoolVar(&f.force, "force", false, "replace --out if it exists")
}

// run loads the layout, applies change, re-signs and writes it.
func (f *keyChangeFlags) run(cmd *cobra.Command, change func(in_toto.Layout) (in_toto.Layout, error)) (*in_toto.Metablock, error) {
	if f.layout == "" || f.out == "" || len(f.ownerKeys) == 0 {
		return nil, fmt.Errorf("--layout, --owner-key and --out are required")
	}
	if _, err := os.Lstat(f.out); err == nil && !f.force {
		return nil, fmt.Errorf("--out %s exists (use --force to replace it)", f.out)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--out %s: %w", f.out, err)
	}
	var validity time.Duration
	if f.expires != "" {
		d, err := layout.ParseExpiry(f.expires)
		if err != nil {
			return nil, fmt.Errorf("--expires: %w", err)
		}
		validity = d
	}
	mb, err := layout.Load(f.layout)
	if err != nil {
		return nil, err
	}
	owners, err := loadSigners(f.ownerKeys)
	if err != nil {
		return nil, err
	}
	out, err := layout.Resign(cmd.Context(), mb, owners, func(l in_toto.Layout) (in_toto.Layout, error) {
		if validity > 0 {
			l.Expires = time.Now().Add(validity).UTC().Format("2006-01-02T15:04:05Z")
		}
		return change(l)
	})
	if err != nil {
		return nil, err
	}
	return out, layout.Write(f.out, out)
}

func (f *keyChangeFlags) report(mb *in_toto.Metablock, r keyChangeReport) keyChangeReport {
	r.Path = f.out
	r.Expires = mb.Signed.(in_toto.Layout).Expires
	for _, s := range mb.Signatures {
		r.Owners = append(r.Owners, s.KeyID)
	}
	return r
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// keyIDOf is the in-toto key ID arg names: the ID itself (64 hex digits)
// or a public key file.
func keyIDOf(flag, arg string) (string, error) {
	if keyIDPattern.MatchString(arg) {
		return arg, nil
	}
	v, err := signing.LoadVerifier(arg)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	return v.KeyID()
}

func newLayoutRotateKey(ro *rootOptions) *cobra.Command {
	var f keyChangeFlags
	var oldKey, newKey, logDir, logKey string
	c := &cobra.Command{
		Use:   "rotate-key --layout FILE --old PUB --new PUB --log DIR --log-key PUB --owner-key KEY... --out FILE",
		Short: "Rotate a functionary key: the new key joins its steps, what the old one signed before now stays valid",
		Long: `Rotate a functionary key out for a new one and sign the new layout with
the owners' keys. The new key joins every step the old one performs; the old
key stays, so in-toto-golang still verifies what it signed, and the layout
records the transparency log (--log, its key --log-key) and its signed tree
size now. stepseal verify then accepts a link of the old key only with
evidence from that log (verify --log) that it was logged below that size:
before the rotation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if oldKey == "" || newKey == "" || logDir == "" || logKey == "" {
				return fmt.Errorf("--old, --new, --log and --log-key are required")
			}
			oldID, err := keyIDOf("old", oldKey)
			if err != nil {
				return err
			}
			nv, err := signing.LoadVerifier(newKey)
			if err != nil {
				return fmt.Errorf("--new: %w", err)
			}
			nk, err := signing.InTotoKey(nv.Public())
			if err != nil {
				return fmt.Errorf("--new: %w", err)
			}
			vkey, err := limited.ReadFile(logKey, 16<<10)
			if err != nil {
				return fmt.Errorf("--log-key: %w", err)
			}
			anchor, err := tlogstore.Anchor(cmd.Context(), logDir, string(vkey))
			if err != nil {
				return fmt.Errorf("--log: %w", err)
			}
			mb, err := f.run(cmd, func(l in_toto.Layout) (in_toto.Layout, error) { return layout.RotateKey(l, oldID, nk, anchor) })
			if err != nil {
				return err
			}
			r := f.report(mb, keyChangeReport{Change: "rotated", KeyID: oldID, NewKey: nk.KeyID, Log: anchor.Origin(), LogSize: anchor.Size})
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: in-toto key %.8s rotated out for %.8s at log %q size %d (links it signed count only if logged below that size); expires %s, signed by %d owner key(s)\n",
					f.out, oldID, nk.KeyID, r.Log, r.LogSize, r.Expires, len(r.Owners))
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&oldKey, "old", "", "public key (or in-toto key ID) of the functionary key rotated out")
	c.Flags().StringVar(&newKey, "new", "", "public key of the functionary key that replaces it")
	c.Flags().StringVar(&logDir, "log", "", "transparency log directory (a run's <out>/store, or the log itself) whose signed tree size bounds the old key's links")
	c.Flags().StringVar(&logKey, "log-key", "", "the log's public note key file (a run's <out>/log.pub)")
	return c
}

func newLayoutRevokeKey(ro *rootOptions) *cobra.Command {
	var f keyChangeFlags
	var key, reason string
	c := &cobra.Command{
		Use:   "revoke-key --layout FILE --key PUB|KEYID --reason TEXT --owner-key KEY... --out FILE",
		Short: "Revoke a functionary key: everything it signed is refused",
		Long: `Revoke a functionary key and sign the new layout with the owners' keys.
The key leaves every step (in-toto-golang refuses its links too) and the
layout records the revocation and its reason, which stepseal verify names
when it refuses a link the key signed, whenever it was signed. A step left
with fewer keys than its threshold is refused: rotate a new key in first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" || reason == "" {
				return fmt.Errorf("--key and --reason are required")
			}
			id, err := keyIDOf("key", key)
			if err != nil {
				return err
			}
			mb, err := f.run(cmd, func(l in_toto.Layout) (in_toto.Layout, error) { return layout.RevokeKey(l, id, reason) })
			if err != nil {
				return err
			}
			r := f.report(mb, keyChangeReport{Change: "revoked", KeyID: id, Reason: reason})
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: in-toto key %.8s revoked (%s): every link it signed is refused; expires %s, signed by %d owner key(s)\n",
					f.out, id, reason, r.Expires, len(r.Owners))
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&key, "key", "", "public key (or in-toto key ID) of the functionary key to revoke")
	c.Flags().StringVar(&reason, "reason", "", "why, recorded in the layout and named when its links are refused")
	return c
}

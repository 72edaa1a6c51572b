package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

func newTrustResign(ro *rootOptions) *cobra.Command {
	var f trustClientFlags
	var online string
	var before, tsExpiry, snapExpiry time.Duration
	var force bool
	c := &cobra.Command{
		Use:   "resign DST --online-key KEY --root ROOT [--source URL] [--before 12h]",
		Short: "Keep the online roles alive: re-sign timestamp (and snapshot) of the published repository",
		Long: `Re-sign the timestamp (and the snapshot, when it too is near its expiry) of
the repository published at DST (oci://registry/repository, or the directory
trust publish wrote), without the repository's directory: for a CronJob.
The published metadata is refreshed and verified first, against the cache's
trusted root (--root bootstraps it); the new timestamp names the verified
snapshot, a new snapshot lists exactly the role versions and hashes the
verified one lists. Nothing is signed when the timestamp expires later than
--before from now (unless --force), when it does not verify (an expired
timestamp included: run trust accept on the repository then), or when DST
changed since. --source defaults to DST when DST is oci://. The publisher
then accepts with --published DST, so its versions follow.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := args[0]
			if f.source == "" && trust.IsOCI(dst) {
				f.source = dst
			}
			if online == "" {
				return fmt.Errorf("--online-key is required")
			}
			s, err := trustSigner(cmd.Context(), online)
			if err != nil {
				return err
			}
			f.noRefresh = true
			cl, _, err := f.refresh(cmd.Context())
			if err != nil {
				return err
			}
			var reg *oci.Client
			if f.insecure {
				reg, err = oci.New(oci.WithInsecure(), oci.WithProgress(nil))
			} else {
				reg, err = oci.New(oci.WithProgress(nil))
			}
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			res, err := repo.Resign(ctx, repo.ResignOptions{Client: cl, Dest: dst, Registry: reg, Online: s, Before: before,
				Expiry: repo.Expiry{Timestamp: tsExpiry, Snapshot: snapExpiry}, Force: force})
			if err != nil {
				return err
			}
			return ro.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				if !res.Resigned {
					fmt.Fprintf(w, "nothing to do: timestamp v%d expires %s, later than %s from now\n", res.Timestamp.From, res.Timestamp.Expires.UTC().Format(time.RFC3339), before)
					return
				}
				fmt.Fprintf(w, "signed timestamp v%d (expires %s)", res.Timestamp.To, res.Timestamp.Expires.UTC().Format(time.RFC3339))
				if res.Snapshot.To != res.Snapshot.From {
					fmt.Fprintf(w, " and snapshot v%d (expires %s)", res.Snapshot.To, res.Snapshot.Expires.UTC().Format(time.RFC3339))
				}
				fmt.Fprintf(w, "; wrote %v to %s\n", res.Written, dst)
				for role, why := range res.Refused {
					fmt.Fprintf(w, "warning: role %s does not verify (clients refuse it): %s\n", role, why)
				}
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&online, "online-key", "", "snapshot and timestamp key: file or KMS URI")
	c.Flags().DurationVar(&before, "before", 12*time.Hour, "re-sign when the timestamp expires within this")
	c.Flags().DurationVar(&tsExpiry, "timestamp-expiry", 24*time.Hour, "expiry of the new timestamp")
	c.Flags().DurationVar(&snapExpiry, "snapshot-expiry", 7*24*time.Hour, "expiry of a new snapshot")
	c.Flags().BoolVar(&force, "force", false, "re-sign the timestamp whatever its expiry")
	return c
}

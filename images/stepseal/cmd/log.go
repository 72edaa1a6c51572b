package cmd

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
)

func newLog(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "log",
		Short: "Serve, search and verify stepseal's transparency log",
	}
	c.AddCommand(newLogVerify(ro), newLogServe(ro), newLogAdd(ro), newLogGet(ro), newLogProof(ro), newLogSearch(ro), newLogAudit(ro), newLogMonitor(ro))
	return c
}

// logVerdict is what `stepseal log verify` reports.
type logVerdict struct {
	Log         string `json:"log"`
	Origin      string `json:"origin,omitempty"`
	Size        uint64 `json:"size"`
	Root        string `json:"root,omitempty"`
	TrustedSize uint64 `json:"trustedSize,omitempty"`
	Verified    uint64 `json:"entriesVerified"`
	Store       bool   `json:"store,omitempty"`
	Blobs       uint64 `json:"blobsVerified,omitempty"`
	OK          bool   `json:"ok"`
	Error       string `json:"error,omitempty"`
}

func newLogVerify(ro *rootOptions) *cobra.Command {
	var dir, server, keyPath, trusted string
	var wf witnessFlags
	c := &cobra.Command{
		Use:   "verify (--log DIR | --server URL) --key PUB [--trusted CHECKPOINT]",
		Short: "Verify a log's checkpoint and every entry's inclusion",
		Long: `Verify the transparency log in DIR (a log directory, or a tlog store
directory holding one in log/) with its public note key only: the checkpoint's
signature, that its tree extends --trusted (an earlier checkpoint you kept:
a smaller or forked log fails), and that every entry is included in the tree
the checkpoint commits to. For a store directory it also checks that every
entry is a store record and that each document and subject list the record
binds in blobs/ is there and matches it. With --server it reads a served
log's tlog-tiles files over HTTP instead. Exit status 0 only when everything
passed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (dir == "") == (server == "") || keyPath == "" {
				return fmt.Errorf("--key and one of --log or --server are required")
			}
			v, err := tlog.ReadVerifier(keyPath)
			if err != nil {
				return err
			}
			policy, err := wf.load()
			if err != nil {
				return err
			}
			storeDir := dir
			dir, isStore := tlogstore.LogDir(dir)
			ctx := cmd.Context()
			c := tlog.NewClient(dir, v)
			if policy != nil {
				c.Require(policy)
			}
			if server != "" {
				lc, err := logserver.NewClient(server, v, nil, logserver.WithWitnesses(policy))
				if err != nil {
					return err
				}
				c, dir, isStore = lc.Log(), server, false
			}
			verdict := &logVerdict{Log: dir, Origin: v.Name(), Store: isStore}
			err = func() error {
				if trusted != "" {
					raw, err := os.ReadFile(trusted)
					if err != nil {
						return err
					}
					t, err := c.Trust(ctx, raw)
					if err != nil {
						return fmt.Errorf("--trusted %s: %w", trusted, err)
					}
					verdict.TrustedSize = t.Size
				}
				cp, err := c.Checkpoint(ctx)
				if err != nil {
					return err
				}
				verdict.Size, verdict.Root = cp.Size, hex.EncodeToString(cp.Hash)
				if isStore {
					return tlogstore.Audit(ctx, storeDir, c, cp, func(a tlogstore.Audited) error {
						verdict.Verified++
						verdict.Blobs += uint64(a.Blobs)
						return nil
					})
				}
				return c.Audit(ctx, cp, 0, func(uint64, []byte) error {
					verdict.Verified++
					return nil
				})
			}()
			verdict.OK = err == nil
			if err != nil {
				verdict.Error = OneLine(err)
			}
			if perr := ro.print(cmd.OutOrStdout(), verdict, func(w io.Writer) { printLogVerdict(w, verdict) }); perr != nil {
				return perr
			}
			if err != nil {
				return reportedError{err}
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "log", "", "log directory (or a tlog store directory)")
	c.Flags().StringVar(&server, "server", "", "a served log's URL (stepseal log serve), instead of --log")
	c.Flags().StringVar(&keyPath, "key", "", "the log's public note key file (<origin>+<hash>+<key>)")
	c.Flags().StringVar(&trusted, "trusted", "", "an earlier checkpoint of this log: the current one must extend it")
	wf.add(c)
	return c
}

func printLogVerdict(w io.Writer, v *logVerdict) {
	if v.OK {
		fmt.Fprintf(w, "PASS: log %s (%s): checkpoint of %d entries, root %s\n", v.Origin, v.Log, v.Size, v.Root)
		if v.TrustedSize > 0 {
			fmt.Fprintf(w, "  extends the trusted checkpoint of %d entries\n", v.TrustedSize)
		}
		fmt.Fprintf(w, "  %d entries verified included\n", v.Verified)
		if v.Store {
			fmt.Fprintf(w, "  %d entries are store records; %d blobs beside the log match them\n", v.Verified, v.Blobs)
		}
		return
	}
	fmt.Fprintf(w, "FAIL: log %s (%s): %s\n", v.Origin, v.Log, v.Error)
	if v.Size > 0 {
		fmt.Fprintf(w, "  checkpoint of %d entries; %d verified before the failure\n", v.Size, v.Verified)
	}
}

package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/witness"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

func newLogServe(ro *rootOptions) *cobra.Command {
	var addr, origin string
	var allow []string
	var allowRemote bool
	var maxInFlight int
	var batchAge time.Duration
	var batchSize uint
	var witnessPolicy string
	var witnessTimeout time.Duration
	var sf storageFlags
	c := &cobra.Command{
		Use:   "serve DIR --allow PUB... [--addr 127.0.0.1:8080] [--origin NAME] [--witness-policy FILE] [--storage aws --mysql-dsn-file FILE --s3-bucket B ...]",
		Short: "Serve a transparency log that writers append signed documents to and readers search",
		Long: `Serve the log in DIR over HTTP: writers POST a DSSE envelope or an in-toto
link or layout to /v1/entries; the server derives its kind, run and subjects,
appends it once per document digest if a key of --allow signed it, and answers
with its index, a checkpoint and an inclusion proof. Readers get the log's
tlog-tiles files (/checkpoint, /tile/...), /v1/entries/{digest} and
/v1/search?subject=&kind=&run=&cursor=&limit=. The log key is DIR/log.key
(created for --origin the first time; readers verify with DIR/log.pub), the
search index DIR/index.db, which follows the log and catches up on restart.
With --witness-policy (Tessera's policy format: "witness NAME VKEY URL",
"group NAME K MEMBER...", "quorum NAME") every checkpoint is sent to the
witnesses (C2SP tlog-witness) and published only once the policy is
satisfied, with their cosignatures; a checkpoint they refuse is not
published, writers get the witness's answer, and GET /v1/witness reports it.

With --storage aws the log is not DIR/log but Tessera's AWS driver: entries
are sequenced in a MySQL-compatible database (--mysql-dsn-file, or the
STEPSEAL_LOG_MYSQL_DSN environment variable) and the tiles and checkpoint kept
in an S3-compatible bucket (--s3-bucket, --s3-endpoint, --s3-region,
--s3-path-style; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
Several servers (replicas) may serve one such log at once, each with its own
DIR for its index, all with the same DIR/log.key; a document posted to two of
them is answered with the same index. This command runs in stepseal-tekton,
which links the AWS SDK.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(allow) == 0 {
				return fmt.Errorf("--allow: at least one public key whose signatures the log accepts")
			}
			if err := repo.CheckListenAddr(addr, allowRemote); err != nil {
				return err
			}
			awsCfg, err := sf.config()
			if err != nil {
				return err
			}
			if awsCfg != nil && ro.awsLog == nil {
				// The lean binary does not link the AWS SDK.
				return ro.execTekton(cmd.Context(), "log serve --storage aws")
			}
			var keys logserver.Keys
			for _, p := range allow {
				v, err := signing.LoadVerifier(p)
				if err != nil {
					return fmt.Errorf("--allow %s: %w", p, err)
				}
				keys = append(keys, v)
			}
			dir := args[0]
			var key tlog.Key
			if awsCfg != nil {
				// Replicas share one key: each must be given it, never
				// make its own.
				key, err = tlog.ReadKey(filepath.Join(dir, "log.key"))
				if err != nil {
					return fmt.Errorf("--storage aws: every replica signs with the same key, %s: %w", filepath.Join(dir, "log.key"), err)
				}
			} else if key, err = logserver.KeyInDir(dir, origin); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := logserver.Options{Keys: keys, MaxInFlight: maxInFlight,
				Log: &tlog.Options{BatchMaxAge: batchAge, BatchMaxSize: batchSize}, WitnessTimeout: witnessTimeout}
			if witnessPolicy != "" {
				if opts.Witnesses, err = witness.ReadPolicy(witnessPolicy); err != nil {
					return fmt.Errorf("--witness-policy: %w", err)
				}
			}
			where := filepath.Join(dir, "log")
			if awsCfg != nil {
				if opts.Storage, err = ro.awsLog(ctx, *awsCfg); err != nil {
					return awsCfg.ScrubError(err)
				}
				where = opts.Storage.Name
			}
			srv, err := logserver.Open(ctx, dir, key, opts)
			if err != nil {
				if awsCfg != nil {
					return awsCfg.ScrubError(err)
				}
				return err
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				srv.Close(cctx)
			}()
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			cp := srv.Checkpoint()
			fmt.Fprintf(cmd.ErrOrStderr(), "serving log %s (%d entries, in %s) at http://%s/; public key %s\n", key.Verifier.Name(), cp.Size, where, l.Addr(), filepath.Join(dir, "log.pub"))
			if opts.Witnesses != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "checkpoints published once cosigned by %s\n", opts.Witnesses)
			}
			return logserver.Serve(ctx, l, srv)
		},
	}
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	c.Flags().BoolVar(&allowRemote, "allow-remote", false, "allow a non-loopback listen address")
	c.Flags().StringVar(&origin, "origin", "stepseal.dev/log", "the log's name, when DIR/log.key is created")
	c.Flags().StringSliceVar(&allow, "allow", nil, "public key file whose signatures the log accepts (repeat)")
	c.Flags().IntVar(&maxInFlight, "max-in-flight", 4096, "appends in flight before writers are pushed back (503)")
	c.Flags().DurationVar(&batchAge, "batch-max-age", 0, "longest an append waits for others to share its batch (default 100ms)")
	c.Flags().UintVar(&batchSize, "batch-max-size", 0, "most appends sequenced in one batch (default 256)")
	c.Flags().StringVar(&witnessPolicy, "witness-policy", "", "witness policy file: checkpoints are published only once these witnesses cosign them")
	c.Flags().DurationVar(&witnessTimeout, "witness-timeout", 0, "longest one round of witness requests may take (default 5s)")
	sf.add(c)
	return c
}

// storageFlags choose where `log serve` keeps the log.
type storageFlags struct {
	storage, dsnFile, bucket, prefix, endpoint, region string
	pathStyle                                          bool
}

// DSNEnv holds the MySQL DSN of `log serve --storage aws` when
// --mysql-dsn-file is not given (a DSN holds a password: never a flag).
const DSNEnv = "STEPSEAL_LOG_MYSQL_DSN"

func (f *storageFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.storage, "storage", "posix", "where the log is kept: posix (DIR/log) or aws (a MySQL-compatible database and an S3-compatible bucket, shared by replicas)")
	c.Flags().StringVar(&f.dsnFile, "mysql-dsn-file", "", "--storage aws: file holding the database's DSN, user:password@tcp(host:3306)/db (default: $"+DSNEnv+")")
	c.Flags().StringVar(&f.bucket, "s3-bucket", "", "--storage aws: the S3 bucket")
	c.Flags().StringVar(&f.prefix, "s3-prefix", "", "--storage aws: a prefix of every object name in the bucket")
	c.Flags().StringVar(&f.endpoint, "s3-endpoint", "", "--storage aws: the S3 endpoint of an S3-compatible server (default AWS's)")
	c.Flags().StringVar(&f.region, "s3-region", "", "--storage aws: the bucket's region (default us-east-1)")
	c.Flags().BoolVar(&f.pathStyle, "s3-path-style", false, "--storage aws: address the bucket in the URL path (most S3-compatible servers)")
}

// config is the AWS storage the flags name, or nil for posix.
func (f *storageFlags) config() (*logserver.AWSConfig, error) {
	switch f.storage {
	case "posix", "":
		if f.dsnFile != "" || f.bucket != "" || f.prefix != "" || f.endpoint != "" || f.region != "" || f.pathStyle {
			return nil, fmt.Errorf("--mysql-dsn-file and --s3-* are for --storage aws")
		}
		return nil, nil
	case "aws":
	default:
		return nil, fmt.Errorf("--storage %q: posix or aws", f.storage)
	}
	cfg := &logserver.AWSConfig{Bucket: f.bucket, Prefix: f.prefix, Endpoint: f.endpoint, Region: f.region, PathStyle: f.pathStyle}
	if f.dsnFile != "" {
		b, err := limited.ReadFile(f.dsnFile, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("--mysql-dsn-file: %w", err)
		}
		cfg.DSN = strings.TrimSpace(string(b))
	} else {
		cfg.DSN = strings.TrimSpace(os.Getenv(DSNEnv))
	}
	if cfg.DSN == "" {
		return nil, fmt.Errorf("--storage aws: the database's DSN in --mysql-dsn-file or $%s", DSNEnv)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("--storage aws: %w (--s3-bucket)", err)
	}
	return cfg, nil
}

// logClientFlags are the flags of every client command.
type logClientFlags struct {
	server, keyPath, checkpoint string
	witnesses                   witnessFlags
}

func (f *logClientFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.server, "server", "", "the log server's URL (http://host:port/)")
	c.Flags().StringVar(&f.keyPath, "log-key", "", "the log's public note key file (DIR/log.pub of the server)")
	c.Flags().StringVar(&f.checkpoint, "checkpoint", "", "a file keeping the newest checkpoint seen: answers must extend it, and it is updated")
	f.witnesses.add(c)
}

// open returns a verifying client, trusting the kept checkpoint.
func (f *logClientFlags) open(ctx context.Context) (*logserver.Client, error) {
	if f.server == "" || f.keyPath == "" {
		return nil, fmt.Errorf("--server and --log-key are required")
	}
	v, err := tlog.ReadVerifier(f.keyPath)
	if err != nil {
		return nil, err
	}
	opts, err := f.witnesses.options()
	if err != nil {
		return nil, err
	}
	c, err := logserver.NewClient(f.server, v, nil, opts...)
	if err != nil {
		return nil, err
	}
	if f.checkpoint != "" {
		raw, err := os.ReadFile(f.checkpoint)
		if err == nil {
			if _, err := c.Log().Trust(ctx, raw); err != nil {
				return nil, fmt.Errorf("--checkpoint %s: %w", f.checkpoint, err)
			}
		} else if !os.IsNotExist(err) {
			return nil, err
		}
	}
	return c, nil
}

// save keeps the newest checkpoint c verified.
func (f *logClientFlags) save(c *logserver.Client) error {
	if f.checkpoint == "" {
		return nil
	}
	cp, ok := c.Log().Latest()
	if !ok {
		return nil
	}
	return signing.WriteFileAtomic(f.checkpoint, cp.Raw, 0o644)
}

// logEntryOut is what add and get print per document.
type logEntryOut struct {
	File     string   `json:"file,omitempty"`
	Digest   string   `json:"digest"`
	Index    uint64   `json:"index"`
	Created  bool     `json:"created,omitempty"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	RunID    string   `json:"runID,omitempty"`
	Subjects []string `json:"subjects"`
	TreeSize uint64   `json:"treeSize"`
}

func entryOut(file string, v logserver.Verified) logEntryOut {
	return logEntryOut{File: file, Digest: v.Entry.Digest, Index: v.Index, Created: v.Created, Kind: v.Entry.Kind, Name: v.Entry.Name,
		RunID: v.Entry.RunID, Subjects: v.Entry.Subjects, TreeSize: v.Checkpoint.Size}
}

func printEntries(w io.Writer, out []logEntryOut) {
	for _, e := range out {
		verb := "in log"
		if e.Created {
			verb = "added"
		}
		name := e.File
		if name == "" {
			name = e.Digest
		}
		fmt.Fprintf(w, "%s: %s at index %d (verified in a tree of %d): %s %q run %q, %d subjects\n", name, verb, e.Index, e.TreeSize, e.Kind, e.Name, e.RunID, len(e.Subjects))
	}
}

func newLogAdd(ro *rootOptions) *cobra.Command {
	var f logClientFlags
	c := &cobra.Command{
		Use:   "add FILE... --server URL --log-key PUB",
		Short: "Append signed documents to a served log and verify each answer's proof",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := f.open(ctx)
			if err != nil {
				return err
			}
			var out []logEntryOut
			for _, p := range args {
				doc, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				v, err := c.Add(ctx, doc)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				out = append(out, entryOut(p, v))
			}
			if err := f.save(c); err != nil {
				return err
			}
			return ro.print(cmd.OutOrStdout(), out, func(w io.Writer) { printEntries(w, out) })
		},
	}
	f.add(c)
	return c
}

func newLogGet(ro *rootOptions) *cobra.Command {
	var f logClientFlags
	var out string
	c := &cobra.Command{
		Use:   "get DIGEST --server URL --log-key PUB [--out FILE]",
		Short: "Fetch a document by its digest, verified included in the log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := f.open(ctx)
			if err != nil {
				return err
			}
			v, err := c.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if err := f.save(c); err != nil {
				return err
			}
			if out != "" {
				if err := signing.WriteFileAtomic(out, v.Entry.Data, 0o644); err != nil {
					return err
				}
			}
			e := []logEntryOut{entryOut(out, v)}
			return ro.print(cmd.OutOrStdout(), e[0], func(w io.Writer) {
				if out == "" {
					w.Write(v.Entry.Data)
					fmt.Fprintln(w)
					return
				}
				printEntries(w, e)
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&out, "out", "", "write the document to FILE (default: print it)")
	return c
}

func newLogProof(ro *rootOptions) *cobra.Command {
	var f logClientFlags
	var format, out string
	c := &cobra.Command{
		Use:   "proof DIGEST --server URL --log-key PUB [--format json|tlog-proof] [--out FILE]",
		Short: "Write the verified inclusion proof of a document (JSON, or a C2SP tlog-proof file)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := f.open(ctx)
			if err != nil {
				return err
			}
			v, err := c.Get(ctx, args[0])
			if err != nil {
				return err
			}
			if err := f.save(c); err != nil {
				return err
			}
			var b []byte
			switch format {
			case "json":
				if b, err = jsonIndent(v.Answer.Proof); err != nil {
					return err
				}
			case "tlog-proof":
				b = logserver.TLogProof(v.Answer)
			default:
				return fmt.Errorf("--format %q: json or tlog-proof", format)
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			return signing.WriteFileAtomic(out, b, 0o644)
		},
	}
	f.add(c)
	c.Flags().StringVar(&format, "format", "json", "json (stepseal's proof: index, record, checkpoint, hashes) or tlog-proof")
	c.Flags().StringVar(&out, "out", "", "write to FILE instead of standard output")
	return c
}

type searchOut struct {
	Query    string          `json:"query"`
	TreeSize uint64          `json:"treeSize"`
	Results  []searchOutItem `json:"results"`
	Next     string          `json:"next"`
	More     bool            `json:"more"`
}

type searchOutItem struct {
	Index    uint64   `json:"index"`
	Digest   string   `json:"digest"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	RunID    string   `json:"runID,omitempty"`
	Subjects []string `json:"subjects"`
}

func newLogSearch(ro *rootOptions) *cobra.Command {
	var f logClientFlags
	var q logserver.Query
	var cursor string
	var limit int
	var all bool
	c := &cobra.Command{
		Use:   "search --server URL --log-key PUB [--subject sha256:HEX] [--kind KIND] [--run ID] [--cursor C] [--limit N] [--all]",
		Short: "Search a served log by subject digest, kind or run; every result's inclusion is verified",
		Long: `Search a served log. Every result's record is verified included in the
answer's checkpoint and checked to match the query, and results come in log
order after the cursor; a server can still leave results out, which only
'stepseal log audit' detects. --all follows every page; --cursor resumes
where an earlier search's "next" left off.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := f.open(ctx)
			if err != nil {
				return err
			}
			from, err := logserver.ParseCursor(cursor)
			if err != nil {
				return err
			}
			res := searchOut{Query: q.String(), Results: []searchOutItem{}}
			for {
				p, err := c.Search(ctx, q, from, limit)
				if err != nil {
					return err
				}
				for _, r := range p.Results {
					res.Results = append(res.Results, searchOutItem{Index: r.Index, Digest: r.Entry.Digest, Kind: r.Entry.Kind, Name: r.Entry.Name, RunID: r.Entry.RunID, Subjects: r.Entry.Subjects})
				}
				res.TreeSize, res.More, from = p.Checkpoint.Size, p.More, p.Next
				if !all || !p.More {
					break
				}
			}
			res.Next = logserver.FormatCursor(from)
			if err := f.save(c); err != nil {
				return err
			}
			return ro.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "%d results for %s (verified in a tree of %d entries)\n", len(res.Results), res.Query, res.TreeSize)
				for _, r := range res.Results {
					fmt.Fprintf(w, "  %d %s %s %q run %q\n", r.Index, r.Digest, r.Kind, r.Name, r.RunID)
				}
				if res.More {
					fmt.Fprintf(w, "more: --cursor %s\n", res.Next)
				} else {
					fmt.Fprintf(w, "complete up to this tree; later entries: --cursor %s\n", res.Next)
				}
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&q.Subject, "subject", "", "subject digest (sha256:<hex>)")
	c.Flags().StringVar(&q.Kind, "kind", "", "entry kind: "+strings.Join([]string{store.KindLink, store.KindLayout, store.KindProvenance, store.KindAttestation}, ", "))
	c.Flags().StringVar(&q.RunID, "run", "", "run ID")
	c.Flags().StringVar(&cursor, "cursor", "", "resume from this cursor")
	c.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("results per page (server default %d, at most %d)", logserver.DefaultLimit, logserver.MaxLimit))
	c.Flags().BoolVar(&all, "all", false, "follow every page")
	return c
}

type auditOut struct {
	Server   string            `json:"server"`
	TreeSize uint64            `json:"treeSize"`
	Entries  uint64            `json:"entriesVerified"`
	Queries  int               `json:"queriesCompared"`
	Results  int               `json:"resultsCompared"`
	Aliases  map[uint64]string `json:"aliases,omitempty"`
	OK       bool              `json:"ok"`
	Error    string            `json:"error,omitempty"`
}

func newLogAudit(ro *rootOptions) *cobra.Command {
	var f logClientFlags
	var index string
	var subjects []string
	c := &cobra.Command{
		Use:   "audit --server URL --log-key PUB --index FILE [--subject sha256:HEX...]",
		Short: "Rebuild the search index from the log alone and prove the server's search answers complete",
		Long: `Read every entry of the served log, verify its inclusion in the server's
checkpoint, and rebuild the search index in FILE (kept: a later audit reads
only the new entries). Then compare the server's search answers for each
--subject (default: every subject in the log, and every kind) with the
rebuilt index: an entry the server left out fails the audit, naming it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if index == "" {
				return fmt.Errorf("--index is required")
			}
			ctx := cmd.Context()
			c, err := f.open(ctx)
			if err != nil {
				return err
			}
			var qs []logserver.Query
			for _, s := range subjects {
				qs = append(qs, logserver.Query{Subject: s})
			}
			rep, err := logserver.Audit(ctx, c, index, qs)
			out := auditOut{Server: f.server, TreeSize: rep.Checkpoint.Size, Entries: rep.Entries, Queries: rep.Queries, Results: rep.Results, Aliases: rep.Aliases, OK: err == nil}
			if err != nil {
				out.Error = OneLine(err)
			} else if serr := f.save(c); serr != nil {
				return serr
			}
			if perr := ro.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				if out.OK {
					fmt.Fprintf(w, "PASS: %s: %d entries verified and indexed; %d searches (%d results) complete\n", out.Server, out.Entries, out.Queries, out.Results)
				} else {
					fmt.Fprintf(w, "FAIL: %s: %s\n", out.Server, out.Error)
				}
				for i, d := range out.Aliases {
					fmt.Fprintf(w, "  alias: log entry %d repeats %s\n", i, d)
				}
			}); perr != nil {
				return perr
			}
			if err != nil {
				return reportedError{err}
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&index, "index", "", "the audit's own index file (bbolt), created or brought up to date")
	c.Flags().StringSliceVar(&subjects, "subject", nil, "subject digests to compare (repeat; default every subject and kind)")
	return c
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

type monitorOut struct {
	Server string                    `json:"server"`
	From   uint64                    `json:"from"`
	To     uint64                    `json:"to"`
	OK     bool                      `json:"ok"`
	Error  string                    `json:"error,omitempty"`
	Gossip []logserver.GossipChecked `json:"gossip,omitempty"`
}

func newLogMonitor(ro *rootOptions) *cobra.Command {
	var server, keyPath, state, gossipFile string
	var interval time.Duration
	var wf witnessFlags
	c := &cobra.Command{
		Use:   "monitor --server URL --log-key PUB --state FILE [--gossip FILE|-] [--interval DURATION] [--witness-key VKEY... --witness-threshold K]",
		Short: "Check that a served log only grows, and verify every entry added since the last check",
		Long: `Read the served log's checkpoint and check it against the one kept in
--state: signed by the log's key and extending it (a smaller tree is a
rollback, another root a fork); then verify the inclusion of every entry added
since and that each is a store record, and keep the new checkpoint in
--state. With --interval, repeat until interrupted. A monitor alone cannot see
a split view (the log showing others another tree); --gossip compares the
checkpoints others saw: Kubernetes objects as JSON (kubectl get taskruns,pipelineruns
-A -o json), whose stepseal.dev/log-checkpoint annotations the controller wrote.
Each must be signed by the log's key and extended by the tree the log shows
this monitor; a larger one means the log shows this monitor less (a split view
or a rollback). Checkpoints of other logs are set aside. With a witness policy,
a gossiped checkpoint without the cosignatures it requires is reported
unverifiable and not compared (no client requiring them accepted it); the
command then fails too, as it could not check everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || keyPath == "" || state == "" {
				return fmt.Errorf("--server, --log-key and --state are required")
			}
			v, err := tlog.ReadVerifier(keyPath)
			if err != nil {
				return err
			}
			wopts, err := wf.options()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			for {
				// Gossip first: an honest log's tree then covers all of it.
				var gossip []logserver.Gossip
				if gossipFile != "" {
					data, err := readInput(cmd, gossipFile)
					if err != nil {
						return fmt.Errorf("--gossip: %w", err)
					}
					if gossip, err = logserver.ParseGossip(data); err != nil {
						return fmt.Errorf("--gossip %s: %w", gossipFile, err)
					}
				}
				var trusted []byte
				if b, err := os.ReadFile(state); err == nil {
					trusted = b
				} else if !os.IsNotExist(err) {
					return err
				}
				c, err := logserver.NewClient(server, v, nil, wopts...)
				if err != nil {
					return err
				}
				got, err := logserver.Monitor(ctx, c, trusted)
				out := monitorOut{Server: server, From: got.From, To: got.To, OK: err == nil}
				if err == nil {
					out.Gossip = logserver.CompareGossip(ctx, c, got.Checkpoint, gossip)
					for _, g := range out.Gossip {
						if g.Err() != nil {
							err = g.Err()
							break
						}
					}
				}
				if err != nil {
					out.OK, out.Error = false, OneLine(err)
				} else if werr := signing.WriteFileAtomic(state, got.Checkpoint.Raw, 0o644); werr != nil {
					return werr
				}
				if perr := ro.print(cmd.OutOrStdout(), out, func(w io.Writer) {
					for _, g := range out.Gossip {
						switch {
						case g.OtherLog:
							fmt.Fprintf(w, "gossip from %s: another log's checkpoint, not compared\n", g.From)
						case g.Unverifiable:
							fmt.Fprintf(w, "gossip from %s: UNVERIFIABLE (not compared): %s\n", g.From, g.Error)
						case g.Error != "":
							fmt.Fprintf(w, "gossip from %s: FAIL: %s\n", g.From, g.Error)
						default:
							fmt.Fprintf(w, "gossip from %s: tree of %d entries, extended by the log's\n", g.From, g.Size)
						}
					}
					if out.OK {
						fmt.Fprintf(w, "PASS: %s grew from %d to %d entries; every new entry verified\n", server, out.From, out.To)
					} else {
						fmt.Fprintf(w, "FAIL: %s: %s\n", server, out.Error)
					}
				}); perr != nil {
					return perr
				}
				if err != nil {
					return reportedError{err}
				}
				if interval <= 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	c.Flags().StringVar(&server, "server", "", "the log server's URL")
	c.Flags().StringVar(&keyPath, "log-key", "", "the log's public note key file")
	c.Flags().StringVar(&state, "state", "", "file keeping the last checkpoint verified (created on the first run)")
	c.Flags().StringVar(&gossipFile, "gossip", "", "Kubernetes objects as JSON (- for standard input) whose stepseal.dev/log-checkpoint annotations to compare with the log's tree")
	c.Flags().DurationVar(&interval, "interval", 0, "repeat every DURATION until interrupted (default: once)")
	wf.add(c)
	return c
}

// maxInput bounds what readInput reads (a cluster's runs as JSON).
const maxInput = 256 << 20

// readInput reads a file, or standard input for "-".
func readInput(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" {
		data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxInput+1))
		if err == nil && len(data) > maxInput {
			err = fmt.Errorf("standard input larger than %d bytes", maxInput)
		}
		return data, err
	}
	return limited.ReadFile(name, maxInput)
}

package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/gate"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store/tlogstore"
	"github.com/stepseal/stepseal/pkg/tlog"
	"github.com/stepseal/stepseal/pkg/trustroot"
	"github.com/stepseal/stepseal/pkg/verify"
)

// readLogKey reads the log's public note key: a file (or, when no such
// file exists, nm itself if it is a note verifier key), or with --trust
// the TUF key target nm.
func readLogKey(cmd *cobra.Command, tf *trustSourceFlags, nm string) (string, error) {
	if !tf.enabled() {
		if _, err := os.Stat(nm); err != nil {
			if _, perr := tlog.ParseVerifier(nm); perr == nil {
				return nm, nil // the key itself, as a Task's parameter gives it
			}
		}
		data, err := limited.ReadFile(nm, 16<<10)
		if err != nil {
			return "", fmt.Errorf("--log-key: %w", err)
		}
		return string(data), nil
	}
	root, err := tf.open(cmd.Context())
	if err != nil {
		return "", err
	}
	d, err := root.Fetch(cmd.Context(), trustroot.PathOf(trustroot.Keys, nm))
	if err != nil {
		return "", fmt.Errorf("--log-key %s: %w", nm, err)
	}
	return string(d.Data), nil
}

func newVerify(ro *rootOptions) *cobra.Command {
	var layoutPath, linksDir, runID, logDir, logKey, from, subject string
	var wf witnessFlags
	var resultVerdict, resultSummary, layoutDir, scope string
	var layoutKeys, artifacts []string
	var threshold int
	var wait time.Duration
	strict := true
	var tf trustSourceFlags
	c := &cobra.Command{
		Use:   "verify (--layout FILE --layout-key KEY... | --trust URL --layout NAME) (--links DIR | --from URL --log-key PUB (--run-id ID | --subject sha256:…)) [--artifact URI=FILE...] [--log DIR --log-key PUB] [--steps STEP|TASK,...] [--wait DURATION] [--result-verdict FILE --result-summary FILE] [--strict=false]",
		Short: "Verify links against a signed in-toto layout; name every failure",
		Long: `Verify a supply chain: the layout's owner signatures, its expiry, every
step's links (signatures by authorized keys, thresholds), that all links come
from one run, the artifact rules, and optionally the delivered artifacts.
Exit status 0 only when everything passed.
With --trust, the layout is the TUF target --layout names (layouts/<name>.layout,
or just <name>), and its owners are the keys of the TUF role that vouches for
it, with that role's threshold: no local layout or key file is read.
With --from, the links are read from a served log (stepseal log serve): those
of the run --run-id names, or of the one run whose entries name --subject;
every answer's checkpoint (signed by --log-key) and inclusion proof is
verified, and the same log is the evidence for links of rotated-out keys.
As a gate in a pipeline (the stepseal-verify Task): --steps verifies only
the named layout steps or tasks (those that ran before the gate); --wait
looks again, with backoff, until every step in scope has a link (the
controller signs a TaskRun after it finished), then verifies what it saw —
a step still missing fails, named; --result-verdict and --result-summary
write the Tekton results (PASSED, FAILED or ERROR when nothing could be
checked; a one-line JSON summary under 1 KiB); --strict=false exits 0
whatever the verdict (rollout), which the results still tell.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var missing []string
			v, err := func() (*verify.Verdict, error) {
				var data []byte
				var owners []signing.Verifier
				// A Task passes every flag; an unused one is empty (an
				// optional workspace not bound, a parameter left "").
				layoutKeys = slices.DeleteFunc(layoutKeys, func(k string) bool { return k == "" })
				if layoutDir != "" {
					if tf.enabled() || layoutPath != "" || len(layoutKeys) > 0 {
						return nil, fmt.Errorf("--layout-dir is the layout and its owners' keys from a directory: not with --trust, --layout or --layout-key")
					}
					var err error
					if layoutPath, layoutKeys, err = gate.LayoutDir(layoutDir); err != nil {
						return nil, err
					}
				}
				if tf.rootSHA256 != "" && !tf.enabled() {
					return nil, fmt.Errorf("--trust-root-sha256 pins the TUF root: it needs --trust")
				}
				layoutName := layoutPath
				if tf.enabled() {
					if layoutPath == "" {
						return nil, fmt.Errorf("--layout (a TUF target) is required")
					}
					if len(layoutKeys) > 0 {
						return nil, tf.refuse(cmd, "layout-key")
					}
					if err := tf.refuse(cmd, "layout-threshold"); err != nil {
						return nil, err
					}
					root, err := tf.open(cmd.Context())
					if err != nil {
						return nil, err
					}
					d, err := root.Layout(cmd.Context(), layoutPath)
					if err != nil {
						return nil, err
					}
					if owners, threshold, err = d.Owners(); err != nil {
						return nil, err
					}
					data, layoutName = d.Data, d.Describe()
					verifyGC()
				} else {
					if layoutPath == "" || len(layoutKeys) == 0 {
						return nil, fmt.Errorf("--layout and --layout-key are required (or --trust URL and --layout NAME)")
					}
					verifyGC()
					var err error
					if data, err = verify.ReadFile(layoutPath); err != nil {
						return nil, err
					}
					if owners, err = loadVerifiers(layoutKeys); err != nil {
						return nil, err
					}
				}
				var steps []string
				if scope != "" {
					// No quoting: a name holding a comma or a newline
					// names no step, and the scope is refused.
					steps = strings.Split(scope, ",")
					for i := range steps {
						steps[i] = strings.TrimSpace(steps[i])
					}
				}
				opts := verify.Options{LayoutThreshold: threshold, RunID: runID, LayoutName: layoutName, Steps: steps}
				fresh := func() verify.LinkSource { return verify.Dir(linksDir) }
				switch {
				case from != "":
					if linksDir != "" || logDir != "" {
						return nil, fmt.Errorf("--from reads links and log evidence from a served log: not with --links or --log")
					}
					if logKey == "" {
						return nil, fmt.Errorf("--from needs --log-key, the served log's public note key")
					}
					vkey, err := readLogKey(cmd, &tf, logKey)
					if err != nil {
						return nil, err
					}
					wopts, err := wf.options()
					if err != nil {
						return nil, err
					}
					src, err := logserver.OpenRun(cmd.Context(), from, vkey, runID, subject, nil, wopts...)
					if err != nil {
						return nil, err
					}
					fresh = func() verify.LinkSource { return &verify.StoreLinks{Store: src.Store, RunID: src.RunID} }
					opts.RunID, opts.Log = src.RunID, src.Evidence
				case subject != "":
					return nil, fmt.Errorf("--subject finds a run in a served log: it needs --from")
				case linksDir == "":
					return nil, fmt.Errorf("--links DIR or --from URL is required")
				case (logDir == "") != (logKey == ""):
					return nil, fmt.Errorf("--log and --log-key go together")
				}
				if logDir != "" {
					vkey, err := readLogKey(cmd, &tf, logKey)
					if err != nil {
						return nil, err
					}
					ev, err := tlogstore.NewEvidence(logDir, vkey)
					if err != nil {
						return nil, fmt.Errorf("--log-key: %w", err)
					}
					opts.Log = ev
				}
				if len(artifacts) > 0 {
					opts.Artifacts = map[string]run.DigestSet{}
					for _, a := range artifacts {
						uri, file, ok := strings.Cut(a, "=")
						if !ok || uri == "" || file == "" {
							return nil, fmt.Errorf("--artifact %q: want URI=FILE, e.g. dist/app.tar.gz=out/workspaces/dist/app.tar.gz", a)
						}
						d, err := artifact.FileSHA256(file)
						if err != nil {
							return nil, fmt.Errorf("--artifact %s: %w", uri, err)
						}
						opts.Artifacts[uri] = run.DigestSet{"sha256": d}
					}
				}
				// Without --artifact, in-toto's behaviour: the chain is checked,
				// no artifact is bound, and the output says so.
				opts.WithoutArtifactUnsafe = len(opts.Artifacts) == 0
				in := gate.Input{Layout: data, Owners: owners, Fresh: fresh, Options: opts, Wait: gate.WaitOptions{Timeout: wait}}
				if wait > 0 {
					last := -1
					in.Wait.Progress = func(m []string) {
						if len(m) > 0 && len(m) != last {
							fmt.Fprintf(cmd.ErrOrStderr(), "waiting up to %s for the links of %d step(s): %s\n", wait, len(m), strings.Join(m, ", "))
						}
						last = len(m)
					}
				}
				var v *verify.Verdict
				var err error
				v, missing, err = gate.Verify(cmd.Context(), in)
				if v == nil {
					return nil, err
				}
				if perr := ro.print(cmd.OutOrStdout(), v, func(w io.Writer) {
					printVerdict(w, v)
					if opts.WithoutArtifactUnsafe {
						fmt.Fprintln(w, "note: no artifact was bound (--artifact URI=FILE): the verdict does not say that any file you hold is what the supply chain produced")
					}
				}); perr != nil {
					return v, perr
				}
				return v, err
			}()
			if resultVerdict != "" || resultSummary != "" {
				s := gate.Summarize(runID, v, err, missing)
				if werr := gate.WriteResults(resultVerdict, resultSummary, s); werr != nil {
					return errors.Join(err, werr)
				}
			}
			switch {
			case err == nil:
				return nil
			case !strict:
				if v == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "error: %s\n", OneLine(err))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "--strict=false: exit status 0 although the verification did not pass\n")
				return nil
			case v != nil:
				return reportedError{err}
			}
			return err
		},
	}
	c.Flags().StringVar(&layoutPath, "layout", "", "signed in-toto layout (root.layout); with --trust, the TUF target (layouts/<name>.layout or <name>)")
	tf.add(c)
	c.Flags().StringArrayVar(&layoutKeys, "layout-key", nil, "public key of a layout owner (repeatable)")
	c.Flags().StringVar(&layoutDir, "layout-dir", "", "a directory holding root.layout and its owners' public keys (*.pub), e.g. a ConfigMap mounted in a Task: instead of --layout and --layout-key")
	c.Flags().IntVar(&threshold, "layout-threshold", 0, "owner signatures required (default: every --layout-key, as in-toto)")
	c.Flags().StringVar(&linksDir, "links", "", "directory of <step>.<keyid8>.link files")
	c.Flags().StringVar(&logDir, "log", "", "transparency log (a run's <out>/store, or the log itself): evidence that links of rotated-out keys were logged before their rotation")
	c.Flags().StringVar(&logKey, "log-key", "", "the log's public note key file (of --log or --from); with --trust, a TUF key target (keys/<name>.pub or <name>)")
	c.Flags().StringVar(&runID, "run-id", "", "require every link to carry this stepseal.dev/run-id (with --from: the run whose links are read)")
	c.Flags().StringVar(&from, "from", "", "read the run's links from a served log (http(s)://host:port/ of stepseal log serve) instead of --links")
	wf.add(c) // with --from: the served log's checkpoints must be cosigned
	c.Flags().StringVar(&subject, "subject", "", "with --from: verify the one run whose logged entries name this digest (sha256:<hex>)")
	c.Flags().StringArrayVar(&artifacts, "artifact", nil, "URI=FILE: the delivered artifact URI must equal its last producing step's product (repeatable)")
	c.Flags().StringVar(&scope, "steps", "", "verify only these layout steps (<task>.<step>) or tasks (all their steps), comma-separated: a gate's scope, the tasks that ran before it")
	c.Flags().DurationVar(&wait, "wait", 0, "look again, with backoff, up to this long until every step in scope has a link; then verify what was seen")
	c.Flags().StringVar(&resultVerdict, "result-verdict", "", "write PASSED, FAILED or ERROR to this file (a Tekton result)")
	c.Flags().StringVar(&resultSummary, "result-summary", "", "write a one-line JSON summary under 1 KiB to this file (a Tekton result)")
	c.Flags().BoolVar(&strict, "strict", true, "exit non-zero unless the verification passed; --strict=false exits 0 (rollout) and the results still say FAILED or ERROR")
	return c
}

// verifyGC sets the garbage collector for one verification, unless the
// user chose with GOGC: verification keeps nearly all it allocates (the
// link files, and the artifact lists pointing into them) until the
// verdict, so each collection at the default GOGC=100 rescans a heap that
// is still all live, for nothing (four collections, ~15% of the CPU time
// on the 50x1000 benchmark chain). With GOGC=800 the heap may reach 9x
// what was live at the last collection before the next; as little of
// verify's allocation is garbage, the peak stays close to what it keeps.
func verifyGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(800)
	}
}

func loadVerifiers(paths []string) ([]signing.Verifier, error) {
	out := make([]signing.Verifier, 0, len(paths))
	for _, p := range paths {
		v, err := signing.LoadVerifier(p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// printVerdict writes the human-readable verdict: a line per step, every
// failure, the warnings, and the final word.
func printVerdict(w io.Writer, v *verify.Verdict) {
	for _, s := range v.Steps {
		mark := "ok  "
		if !s.Passed {
			mark = "FAIL"
		}
		valid := 0
		for _, l := range s.Links {
			if l.Valid {
				valid++
			}
		}
		if s.Skipped != "" {
			if s.Passed {
				mark = "skip"
			}
			fmt.Fprintf(w, "  %s %-32s skipped, signed skip record: %s\n", mark, s.Name, s.Skipped)
			continue
		}
		fmt.Fprintf(w, "  %s %-32s %d/%d valid link(s), threshold %d\n", mark, s.Name, valid, len(s.Links), s.Threshold)
	}
	for _, wn := range v.Warnings {
		// Commands differ whenever parameters were substituted; the full
		// text is in --output json and verification.json.
		if r := []rune(wn); len(r) > 160 {
			wn = string(r[:160]) + "…"
		}
		fmt.Fprintf(w, "  warning: %s\n", strings.ReplaceAll(wn, "\n", `\n`))
	}
	if v.Passed {
		fmt.Fprintf(w, "VERIFICATION PASSED: every step of the layout was performed by an authorized functionary and the artifacts flowed as the layout requires\n")
		return
	}
	fmt.Fprintf(w, "VERIFICATION FAILED: %d failure(s)\n", len(v.Failures))
	for _, f := range v.Failures {
		fmt.Fprintf(w, "  - %s\n", OneLine(f))
	}
}

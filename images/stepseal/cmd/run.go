package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/embedded"
	"github.com/stepseal/stepseal/pkg/verify"
)

type runOptions struct {
	out, keys, tasks, functionaries string
	platformPolicy                  string
	params                          []string
	exclude                         []string
	quiet, force                    bool
	trustLayout                     string
	trust                           trustSourceFlags
}

func newRun(ro *rootOptions) *cobra.Command {
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run PATH --out DIR",
		Short: "Run a Tekton Pipeline on this host, sign every step, and verify the result",
		Long: `Run a Tekton v1 Pipeline on this host without a cluster (the embedded default).

PATH is an example directory (pipeline.yaml, tasks/, functionaries.yaml) or a
Pipeline, PipelineRun or TaskRun file (functionaries.yaml beside it, or
--functionaries). A run file's pipelineRef/taskRef and the ConfigMaps and
Secrets its workspaces bind are looked up in the same file, --tasks DIR, then
the YAML files beside it; its params, workspace bindings and timeouts apply,
and -p overrides or adds params. A TaskRun runs as a one-task pipeline whose
task is named after the TaskRun (steps <taskRun>.<step>). Steps run as host processes: each step's image is recorded in
its link, not pulled. stepseal generates the in-toto layout from the Pipeline,
signs it with the owner key, records and signs a link per step with the key of
the functionary the layout assigns, writes SLSA v1 provenance, stores all of it,
verifies it, and prints the verdict. Exit status 0 only if verification passed.

Writes DIR/root.layout, DIR/keys/*.pub, DIR/links/<step>.<keyid8>.link,
DIR/provenance.json (DSSE), DIR/verification.json, DIR/store/ and the
workspaces under DIR/work/workspaces/. Without --keys, throwaway keys are made in
DIR/keys (owner, publisher, one per functionary).

With --trust URL, the run is verified against the layout its owners released
through TUF (layouts/<pipeline>.layout, or --trust-layout), with the keys and
threshold of the role that vouches for it, instead of the layout it generates
(still written to DIR/root.layout); a pipeline with no released layout does not
run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, ro, args[0]) },
	}
	c.Flags().StringVar(&o.out, "out", "", "output directory (must not exist or be empty)")
	c.Flags().StringVar(&o.keys, "keys", "", "directory with owner.key, publisher.key and <functionary>.key (default: make throwaway keys)")
	c.Flags().StringVar(&o.tasks, "tasks", "", "directory of Task files (default: PATH/tasks for an example directory)")
	c.Flags().StringVar(&o.functionaries, "functionaries", "", "functionaries file (default: functionaries.yaml next to the pipeline)")
	c.Flags().StringVar(&o.platformPolicy, "platform-policy", "", "platform policy for publishing the output (default: platform-policy.yaml next to the pipeline, if present)")
	c.Flags().StringArrayVarP(&o.params, "param", "p", nil, "pipeline parameter NAME=VALUE (repeatable; overrides a run file's param of that name)")
	c.Flags().StringArrayVar(&o.exclude, "exclude", nil, "gitignore-style pattern of workspace paths not to record (repeatable)")
	c.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "do not stream step output")
	c.Flags().BoolVar(&o.force, "force", false, "replace a non-empty --out directory")
	c.Flags().StringVar(&o.trustLayout, "trust-layout", "", "with --trust: the TUF target of the layout to verify against (default: layouts/<pipeline>.layout)")
	o.trust.add(c)
	return c
}

func (o *runOptions) run(cmd *cobra.Command, ro *rootOptions, path string) error {
	w := cmd.OutOrStdout()
	if ro.output == "json" {
		w = cmd.ErrOrStderr() // progress to stderr, the report to stdout
	}
	if o.out == "" {
		// A usage error is this binary's own, found before any handover.
		return fmt.Errorf("--out is required")
	}
	params, err := parseParams(o.params)
	if err != nil {
		return err
	}
	if ro.tekton == nil {
		return ro.execTekton(cmd.Context(), "stepseal run")
	}
	opts := embedded.Options{
		Tekton: ro.tekton, Path: path, Out: o.out, Force: o.force, KeysDir: o.keys,
		TasksDir: o.tasks, Functionaries: o.functionaries, PlatformPolicy: o.platformPolicy,
		Params: params, Exclude: o.exclude, Quiet: o.quiet, Progress: w,
	}
	if o.trust.enabled() {
		// Verify against the layout the pipeline's owners released through
		// TUF, with their keys (fetched once the pipeline is loaded, before
		// anything runs).
		opts.Trusted = func(ctx context.Context, pipeline string) (*embedded.TrustedLayout, error) {
			name := o.trustLayout
			if name == "" {
				name = pipeline
			}
			root, err := o.trust.open(ctx)
			if err != nil {
				return nil, err
			}
			d, err := root.Layout(ctx, name)
			if err != nil {
				return nil, err
			}
			owners, threshold, err := d.Owners()
			if err != nil {
				return nil, err
			}
			return &embedded.TrustedLayout{Data: d.Data, Owners: owners, Threshold: threshold, Name: d.Describe()}, nil
		}
	}
	if ro.output != "json" {
		// The verdict is printed as soon as it is known; publishing (only
		// of a verified output) follows and ends with its own summary.
		opts.OnVerdict = func(v *verify.Verdict, runErr error) {
			printVerdict(w, v)
			if runErr != nil && v.Passed {
				// The last line and the exit status must agree.
				fmt.Fprintf(w, "RESULT: FAILED: the pipeline run failed (%s), although the links of the steps that ran verify\n", OneLine(runErr))
			}
		}
	}
	report, err := embedded.Run(cmd.Context(), opts)
	if err != nil {
		return err
	}
	if err := ro.print(cmd.OutOrStdout(), report, func(io.Writer) {
		if p := report.Published; p != nil && p.Verified && report.PublishErr == nil {
			fmt.Fprintf(w, "RESULT: verification passed; %s published encrypted to %v, signed, attested, and decrypted back by %s\n", report.OutputName, p.Platforms, p.Platforms[0])
		}
	}); err != nil {
		return err
	}
	switch {
	case report.PublishErr != nil:
		return report.PublishErr
	case report.VerifyErr != nil:
		return reportedError{report.VerifyErr}
	case report.RunErr != nil:
		return reportedError{report.RunErr}
	}
	return nil
}

func parseParams(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param %q: want NAME=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

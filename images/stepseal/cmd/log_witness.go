package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/logserver/witness"
)

// witnessFlags are a client's witness requirements: a policy file, or keys
// and a threshold.
type witnessFlags struct {
	policy    string
	keys      []string
	threshold int
	maxAge    time.Duration
	stale     string
	cmd       *cobra.Command
}

func (f *witnessFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.policy, "witness-policy", "", "witness policy file (the server's --witness-policy): every checkpoint accepted must satisfy it")
	c.Flags().StringSliceVar(&f.keys, "witness-key", nil, "a witness's note verifier key, or a file holding it: checkpoints must carry its cosignature (repeat; see --witness-threshold)")
	c.Flags().IntVar(&f.threshold, "witness-threshold", 0, "how many of the --witness-key witnesses must cosign (default all of them)")
	c.Flags().DurationVar(&f.maxAge, "witness-max-age", 0, "count only witness cosignatures newer than this on the checkpoints the log shows now (their cosignature/v1 timestamps; longer than the log's 10-minute republication; default: no bound)")
	c.Flags().StringVar(&f.stale, "witness-stale", string(witness.StaleRefuse), "a checkpoint satisfying the policy only with cosignatures older than --witness-max-age: refuse, or warn (on standard error) and accept")
	f.cmd = c
}

// load returns the policy, nil when no witness is required.
func (f *witnessFlags) load() (*witness.Policy, error) {
	p, err := f.loadPolicy()
	if err != nil || p == nil {
		if err == nil && f.maxAge != 0 {
			err = fmt.Errorf("--witness-max-age needs --witness-policy or --witness-key")
		}
		return nil, err
	}
	if f.maxAge == 0 {
		return p, nil
	}
	fr := witness.Freshness{MaxAge: f.maxAge, Stale: witness.StaleAction(f.stale)}
	if f.cmd != nil {
		w := f.cmd.ErrOrStderr()
		fr.Warn = func(msg string) { fmt.Fprintf(w, "warning: %s\n", msg) }
	}
	p, err = p.WithFreshness(fr)
	if err != nil {
		return nil, fmt.Errorf("--witness-max-age/--witness-stale: %w", err)
	}
	return p, nil
}

func (f *witnessFlags) loadPolicy() (*witness.Policy, error) {
	switch {
	case f.policy != "" && len(f.keys) > 0:
		return nil, fmt.Errorf("--witness-policy or --witness-key, not both")
	case f.policy != "":
		return witness.ReadPolicy(f.policy)
	case len(f.keys) > 0:
		k := f.threshold
		if k == 0 {
			k = len(f.keys)
		}
		p, err := witness.NewPolicy(k, f.keys...)
		if err != nil {
			return nil, fmt.Errorf("--witness-key/--witness-threshold: %w", err)
		}
		return p, nil
	case f.threshold != 0:
		return nil, fmt.Errorf("--witness-threshold needs --witness-key")
	}
	return nil, nil
}

// options are the client options that require the policy.
func (f *witnessFlags) options() ([]logserver.ClientOption, error) {
	p, err := f.load()
	if err != nil || p == nil {
		return nil, err
	}
	return []logserver.ClientOption{logserver.WithWitnesses(p)}, nil
}

package cmd

import (
	"fmt"

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
}

func (f *witnessFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.policy, "witness-policy", "", "witness policy file (the server's --witness-policy): every checkpoint accepted must satisfy it")
	c.Flags().StringSliceVar(&f.keys, "witness-key", nil, "a witness's note verifier key, or a file holding it: checkpoints must carry its cosignature (repeat; see --witness-threshold)")
	c.Flags().IntVar(&f.threshold, "witness-threshold", 0, "how many of the --witness-key witnesses must cosign (default all of them)")
}

// load returns the policy, nil when no witness is required.
func (f *witnessFlags) load() (*witness.Policy, error) {
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

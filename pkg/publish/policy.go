package publish

import (
	"errors"

	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// PolicySource is where a platform policy comes from and how it is trusted.
type PolicySource struct {
	// Path is the policy file: a plain document, or a DSSE envelope signed
	// by the owners.
	Path string
	// Keys are the owners' keys. When set, the policy must be signed by
	// Threshold of them (default 1), and it is checked against, then
	// recorded in, the state directory.
	Keys      []signing.Verifier
	Threshold int
	// StateDir records the newest signed policy version accepted, per name
	// and owner keys; default policy.DefaultStateDir().
	StateDir string
}

// LoadPolicy reads a platform policy. A signed one (Keys set) is refused
// when it is older than one accepted before, or the same version with other
// content (policy.ErrRollback), and recorded once accepted; a state that
// cannot be read or written is policy.ErrState. An unsigned policy is not
// tracked: whoever can write one can give it any version.
func LoadPolicy(src PolicySource) (*policy.Policy, error) {
	if src.Path == "" {
		return nil, errors.New("no platform policy given")
	}
	opts := policy.Options{Keys: src.Keys, Threshold: src.Threshold}
	if len(src.Keys) > 0 {
		dir := src.StateDir
		if dir == "" {
			var err error
			if dir, err = policy.DefaultStateDir(); err != nil {
				return nil, err
			}
		}
		opts.State = policy.NewState(dir)
	}
	return policy.Load(src.Path, opts)
}

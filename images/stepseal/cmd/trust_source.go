package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/trustroot"
)

// trustSourceFlags are the flags of a verifier that takes its trust from a
// TUF repository (--trust): with them, every flag that names a layout, a
// policy or a public key names a TUF target instead of a file, and local
// files are never read in its place.
type trustSourceFlags struct {
	url, cache, root     string
	floor, rootSHA256    string
	timeout, fileTimeout time.Duration
	offline, insecure    bool
	opened               *trustroot.Root
}

func (f *trustSourceFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.url, "trust", "", "TUF repository metadata URL: layouts, policies and keys are then TUF targets, and the flags naming them name targets (layouts/<name>.layout, policies/<name>.policy, keys/<name>.pub, or a short name), never files")
	c.Flags().StringVar(&f.cache, "trust-cache", defaultTrustCache(), "directory of the trusted TUF metadata; its root.json is the trusted root")
	c.Flags().StringVar(&f.root, "trust-root", "", "root.json to bootstrap from, used only when the cache has none")
	c.Flags().DurationVar(&f.timeout, "trust-timeout", 2*time.Minute, "bound on the TUF refresh")
	c.Flags().BoolVar(&f.offline, "trust-offline", false, "do not refresh: verify and use the TUF cache as it is")
	c.Flags().StringVar(&f.rootSHA256, "trust-root-sha256", "", "pin of the root to start from (sha256 hex): the cached root, else --trust-floor's, else --trust-root, else the repository's 1.root.json, which is then downloaded; another root is refused")
	c.Flags().StringVar(&f.floor, "trust-floor", "", "trust floor (floor.json of the controller's stepseal-trust ConfigMap), for a consumer without a cache of its own")
	c.Flags().BoolVar(&f.insecure, "trust-insecure", false, "plain HTTP to an oci:// TUF repository on a loopback registry")
}

// enabled says whether trust comes from TUF.
func (f *trustSourceFlags) enabled() bool { return f.url != "" || f.offline }

// open refreshes the TUF metadata (or loads the cache with
// --trust-offline) once per command and returns the trust root; a refresh
// that fails is the command's error (fail closed).
func (f *trustSourceFlags) open(ctx context.Context) (*trustroot.Root, error) {
	if f.opened != nil {
		return f.opened, nil
	}
	cf := trustClientFlags{source: f.url, cache: f.cache, root: f.root, timeout: f.timeout, fileTimeout: f.fileTimeout, offline: f.offline, insecure: f.insecure, floor: f.floor, rootSHA256: f.rootSHA256}
	if cf.fileTimeout == 0 {
		cf.fileTimeout = 30 * time.Second
	}
	c, _, err := cf.refresh(ctx)
	if err != nil {
		return nil, fmt.Errorf("--trust %s: %w", f.url, err)
	}
	f.opened = trustroot.New(c)
	return f.opened, nil
}

// refuse returns an error naming the first of the given flags that is set
// on c: flags that read local trust files, which --trust replaces.
func (f *trustSourceFlags) refuse(c *cobra.Command, names ...string) error {
	for _, n := range names {
		if c.Flags().Changed(n) {
			return fmt.Errorf("--%s reads a local file; with --trust the trust comes from the TUF repository only (the owners are the keys of the role that vouches for the target)", n)
		}
	}
	return nil
}

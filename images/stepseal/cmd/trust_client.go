package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trustroot"
)

// trustClientFlags are the flags every client command shares.
type trustClientFlags struct {
	source, cache, root  string
	targets, floor       string
	rootSHA256           string
	timeout, fileTimeout time.Duration
	offline              bool
	insecure             bool
	mirrors              []string
	// noRefresh: refresh builds the client only (its caller refreshes).
	noRefresh bool
}

func (f *trustClientFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.source, "source", "", "base URL of the repository's metadata (required)")
	c.Flags().StringVar(&f.cache, "cache", defaultTrustCache(), "directory of the trusted metadata; its root.json is the trusted root")
	c.Flags().StringVar(&f.root, "root", "", "root.json to bootstrap from, used only when the cache has none")
	c.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "bound on the whole refresh")
	c.Flags().DurationVar(&f.fileTimeout, "file-timeout", 30*time.Second, "bound on each download")
	c.Flags().BoolVar(&f.offline, "offline", false, "do not refresh: verify and use the cache as it is")
	c.Flags().StringVar(&f.floor, "floor", "", "trust floor (floor.json of the controller's stepseal-trust ConfigMap): start from its root when the cache has none, and refuse older versions")
	c.Flags().BoolVar(&f.insecure, "insecure", false, "plain HTTP to an oci:// source on a loopback registry")
	c.Flags().StringVar(&f.targets, "targets", "", "base URL of the target files (default: --source's sibling targets/)")
	c.Flags().StringArrayVar(&f.mirrors, "mirror", nil, "metadata URL tried, in order, when the refresh from --source fails (repeatable)")
}

func defaultTrustCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "stepseal", "trust")
	}
	return ""
}

// refresh builds the client and refreshes it within --timeout; with
// --offline it loads the cache instead.
func (f *trustClientFlags) refresh(ctx context.Context) (*trust.Client, *trust.Changes, error) {
	if f.cache == "" || (f.source == "" && !f.offline) {
		return nil, nil, fmt.Errorf("--source and --cache are required")
	}
	if f.source == "" {
		f.source = "http://offline.invalid"
	}
	o := trust.ClientOptions{Source: f.source, Mirrors: f.mirrors, CacheDir: f.cache, FileTimeout: f.fileTimeout, TargetsURL: f.targets, RootSHA256: f.rootSHA256}
	if f.root != "" {
		data, err := os.ReadFile(f.root)
		if err != nil {
			return nil, nil, err
		}
		o.BootstrapRoot = data
	}
	if f.floor != "" {
		data, err := os.ReadFile(f.floor)
		if err != nil {
			return nil, nil, err
		}
		if o.Floor, err = trust.ParseFloor(data); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.floor, err)
		}
	}
	if f.insecure {
		reg, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
		if err != nil {
			return nil, nil, err
		}
		o.Registry = reg
	}
	c, err := trust.NewClient(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	if f.noRefresh {
		return c, nil, nil
	}
	if f.offline {
		return c, nil, c.LoadCache(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	ch, err := c.Refresh(ctx)
	return c, ch, err
}

// trustStatusReport is what `stepseal trust status` prints.
type trustStatusReport struct {
	Status  *trust.Status  `json:"status"`
	Changes *trust.Changes `json:"changes,omitempty"`
	Error   string         `json:"error,omitempty"`
	// Released are the released artifacts checked against --recipients'
	// policy (Policy, at PolicyVersion).
	Policy        string               `json:"policy,omitempty"`
	PolicyVersion int64                `json:"policyVersion,omitempty"`
	Released      []trustroot.Released `json:"released,omitempty"`
	Refused       []string             `json:"refusedTargets,omitempty"`
	// Stale says which released artifacts' recipients differ from it.
	Stale string `json:"stale,omitempty"`
}

func newTrustStatus(ro *rootOptions) *cobra.Command {
	var f trustClientFlags
	var all bool
	var recipients string
	c := &cobra.Command{
		Use:   "status --source URL [--cache DIR] [--root ROOT.json] [--all] [--recipients POLICY]",
		Short: "Refresh the trusted TUF metadata and say what changed, what is trusted and what expires soon",
		Long: `Refresh the TUF metadata from --source into --cache (verifying root
rotations, timestamp, snapshot and top-level targets; delegated roles are
loaded by the lookups that need them), then print what changed — versions,
keys, delegations, and the target paths each role added, removed or changed
(the top-level targets always, delegated roles once loaded: all with --all),
and a suspected fast-forward (a version jump of more than 100 000, or a
rollback refusal after one) — the version,
expiry, keys (TUF key IDs) and delegated paths of every role loaded, roles
refused by stepseal's delegation rules, and warnings for metadata expiring
within 7 days. With --all, every delegated role is loaded and verified first,
and stepseal's delegation rules are checked over the whole tree (a role
delegated by two roles, a path listed by a role not delegated it), which a
lookup checks only on its way. On a failed refresh the cache is unchanged;
the error is printed with what the cache still trusts, and the exit status is
1. With --offline, only the cache is verified and shown.
With --recipients POLICY (a platform policy TUF vouches for: policies/<name>.policy
or its short name), every released artifact TUF vouches for
(oci/<registry>/<repository>:<tag>) is checked against it: who can decrypt the
vouched digest, and whether that is exactly the rule's platforms. After a
platform is removed from the policy, it lists the artifacts still encrypted to
it (exit status 1); re-encrypt each with stepseal crypt rotate and release the
new digest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ch, err := f.refresh(cmd.Context())
			if c == nil {
				return err
			}
			if err != nil && !f.offline {
				// Say what is still trusted: the cache, verified offline.
				_ = c.LoadCache(cmd.Context())
			}
			if all {
				ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
				lerr := c.LoadAll(ctx)
				cancel()
				if err == nil && lerr != nil && !errors.Is(lerr, trust.ErrUnavailable) {
					err = lerr
				}
			}
			// Which target paths changed: top-level always, delegated
			// roles as far as they are loaded (all with --all).
			c.TargetChanges(ch)
			rep := trustStatusReport{Changes: ch}
			var stale error
			if recipients != "" && err == nil {
				if stale = auditRecipients(cmd.Context(), c, &f, recipients, &rep); stale != nil && !errors.Is(stale, trustroot.ErrStaleRecipients) {
					err, stale = stale, nil
				}
			}
			rep.Status = c.Status(cmd.Context())
			if err != nil {
				rep.Error = err.Error()
			} else if stale != nil {
				rep.Stale = stale.Error()
				err = stale
			}
			if perr := ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printTrustStatus(w, rep) }); perr != nil {
				return perr
			}
			if err != nil {
				return reportedError{err}
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().BoolVar(&all, "all", false, "load and verify every delegated role, and check the delegation rules over the whole tree")
	c.Flags().StringVar(&recipients, "recipients", "", "check every released artifact's recipients against this platform policy (a TUF target)")
	return c
}

// auditRecipients fills rep with the released artifacts checked against
// the policy, and returns trustroot.ErrStaleRecipients when any differs.
func auditRecipients(ctx context.Context, c *trust.Client, f *trustClientFlags, name string, rep *trustStatusReport) error {
	root := trustroot.New(c)
	pol, _, err := root.Policy(ctx, name)
	if err != nil {
		return err
	}
	opts := []oci.Option{oci.WithProgress(nil)}
	if f.insecure {
		opts = append(opts, oci.WithInsecure())
	}
	reg, err := oci.New(opts...)
	if err != nil {
		return err
	}
	rel, refused, err := root.AuditRecipients(ctx, reg, pol)
	if err != nil {
		return err
	}
	rep.Policy, rep.PolicyVersion, rep.Released = pol.Name, pol.Version, rel
	for _, e := range refused {
		rep.Refused = append(rep.Refused, e.Error())
	}
	return trustroot.StaleError(pol, trustroot.Stale(rel))
}

func printTrustStatus(w io.Writer, rep trustStatusReport) {
	defer printReleased(w, rep)
	s := rep.Status
	fmt.Fprintf(w, "source  %s\ncache   %s\n", s.Source, s.CacheDir)
	if rep.Error != "" {
		fmt.Fprintf(w, "refresh FAILED: %s\n", rep.Error)
	}
	if ch := rep.Changes; ch != nil {
		if !ch.Updated {
			since := ""
			if !ch.UnchangedSince.IsZero() {
				since = fmt.Sprintf(" since %s, timestamp v%d", ch.UnchangedSince.Format(time.RFC3339), ch.Timestamp.To)
			}
			fmt.Fprintf(w, "refresh no new metadata%s (%d requests, %d bytes)\n", since, ch.Requests, ch.Bytes)
		} else {
			fmt.Fprintf(w, "refresh root v%d→v%d, timestamp v%d→v%d, snapshot v%d→v%d, targets v%d→v%d (%d requests, %d bytes)\n",
				ch.Root.From, ch.Root.To, ch.Timestamp.From, ch.Timestamp.To, ch.Snapshot.From, ch.Snapshot.To, ch.Targets.From, ch.Targets.To, ch.Requests, ch.Bytes)
			for _, r := range ch.Roles {
				fmt.Fprintf(w, "        role %s v%d→v%d\n", r.Role, r.From, r.To)
			}
			for _, k := range ch.Keys {
				fmt.Fprintf(w, "        %s key %s %s\n", k.Role, k.KeyID, k.Change)
			}
			for _, d := range ch.Delegations {
				fmt.Fprintf(w, "        %s → %s: %s %s %s\n", d.Delegator, d.Role, d.Change, d.KeyID, d.Detail)
			}
			for _, tc := range ch.TargetChanges {
				switch tc.Change {
				case "added":
					fmt.Fprintf(w, "        %s: added %s (sha256 %s, %d bytes)\n", tc.Role, tc.Path, tc.ToSHA256, tc.ToLength)
				case "removed":
					fmt.Fprintf(w, "        %s: removed %s (was sha256 %s)\n", tc.Role, tc.Path, tc.FromSHA256)
				default:
					fmt.Fprintf(w, "        %s: changed %s sha256 %s → %s (%d → %d bytes)\n", tc.Role, tc.Path, tc.FromSHA256, tc.ToSHA256, tc.FromLength, tc.ToLength)
				}
			}
			roles := make([]string, 0, len(ch.TargetsNotCompared))
			for r := range ch.TargetsNotCompared {
				roles = append(roles, r)
			}
			sort.Strings(roles)
			for _, r := range roles {
				fmt.Fprintf(w, "        %s: target paths not compared: %s\n", r, ch.TargetsNotCompared[r])
			}
			if ch.SuspectedFastForward != "" {
				fmt.Fprintf(w, "warning: suspected fast-forward: %s\n", ch.SuspectedFastForward)
			}
		}
	}
	if !s.Trusted {
		fmt.Fprintln(w, "no verified metadata")
	}
	for _, r := range s.Roles {
		parent := ""
		if r.Parent != "" && r.Parent != "root" {
			parent = " (delegated by " + r.Parent + ")"
		}
		fmt.Fprintf(w, "%-12s v%-5d expires %s  %d of %d keys%s\n", r.Role, r.Version, r.Expires.UTC().Format(time.RFC3339), r.Threshold, len(r.KeyIDs), parent)
		if len(r.Paths) > 0 {
			fmt.Fprintf(w, "             paths %s, %d targets\n", strings.Join(r.Paths, " "), r.Targets)
		}
	}
	if s.Trusted && !s.AllLoaded {
		fmt.Fprintf(w, "delegated roles: %d of %d loaded (by lookups); --all loads and checks them all\n", s.Loaded, s.Delegated)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func newTrustResolve(ro *rootOptions) *cobra.Command {
	var f trustClientFlags
	var sha string
	var size int64
	c := &cobra.Command{
		Use:   "resolve PATH --source URL [--cache DIR] [--sha256 HEX --size N]",
		Short: "Refresh, then say which TUF role vouches for PATH, through which delegations, signed by which keys",
		Long: `Refresh the TUF metadata (as trust status does), then resolve PATH: the
role that lists it, its version, the delegation chain from the top-level
targets, the TUF key IDs whose signatures verify, and the sha256 and length it
vouches for. With --sha256 and --size, also check that an artifact of that
digest and size is the one vouched for. A path matched by two sibling
delegations, a role delegated twice or in a cycle, is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := f.refresh(cmd.Context())
			if err != nil {
				return err
			}
			var r *trust.Resolution
			if sha != "" || cmd.Flags().Changed("size") {
				r, err = c.VerifyArtifact(cmd.Context(), args[0], sha, size)
			} else {
				r, err = c.Resolve(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n  sha256  %s\n  length  %d\n  role    %s v%d (expires %s)\n  chain   %s\n  signed  %d of threshold %d: %s (TUF key IDs)\n",
					r.Path, r.SHA256, r.Length, r.Role, r.RoleVersion, r.RoleExpires.UTC().Format(time.RFC3339),
					strings.Join(r.Chain, " → "), len(r.SignedBy), r.Threshold, strings.Join(r.SignedBy, ", "))
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&sha, "sha256", "", "expected sha256 (hex) of the artifact")
	c.Flags().Int64Var(&size, "size", 0, "expected size in bytes of the artifact")
	return c
}

// trustFetchReport is what `stepseal trust fetch` prints.
type trustFetchReport struct {
	*trust.Resolution
	Out    string `json:"out"`
	URL    string `json:"url,omitempty"`
	Cached bool   `json:"cached"`
}

func newTrustFetch(ro *rootOptions) *cobra.Command {
	var f trustClientFlags
	var out string
	c := &cobra.Command{
		Use:   "fetch PATH --source URL --out FILE",
		Short: "Refresh, then download the target file PATH, checked against the role that vouches for it",
		Long: `Refresh the TUF metadata, resolve PATH as trust resolve does, and download
its file (from --targets, by default the metadata URL's sibling targets/,
named <sha256>.<name> under consistent snapshots). The file is written to
--out only when its length and sha256 are the ones the role signed; a copy is
kept in the cache (targets/<sha256>), so a later fetch, --offline included,
does not download it again. Files above 16 MiB are refused before download.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out is required (- for standard output)")
			}
			c, _, err := f.refresh(cmd.Context())
			if err != nil {
				return err
			}
			t, err := c.Fetch(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if out == "-" {
				_, err := cmd.OutOrStdout().Write(t.Data)
				return err
			}
			if err := signing.WriteFileAtomic(out, t.Data, 0o644); err != nil {
				return err
			}
			rep := trustFetchReport{Resolution: t.Resolution, Out: out, Cached: t.Cached}
			if !t.Cached {
				rep.URL = c.TargetURL(t.Resolution)
			}
			return ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				from := "downloaded"
				if t.Cached {
					from = "from the cache"
				}
				fmt.Fprintf(w, "%s: %d bytes, sha256 %s, %s, vouched for by %s v%d → %s\n", t.Path, t.Length, t.SHA256, from, t.Role, t.RoleVersion, out)
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&out, "out", "", "file to write (- for standard output)")
	return c
}

func printReleased(w io.Writer, rep trustStatusReport) {
	if rep.Policy == "" {
		return
	}
	fmt.Fprintf(w, "released artifacts against policy %q version %d:\n", rep.Policy, rep.PolicyVersion)
	for _, r := range rep.Released {
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "  ?    %s: could not check: %s\n", r.Path, r.Error)
		case r.Mismatch != "":
			fmt.Fprintf(w, "  STALE %s (%s, %s v%d): %s", r.Path, r.Ref, r.Role, r.RoleVersion, r.Mismatch)
			if len(r.UnknownKeys) > 0 {
				fmt.Fprintf(w, "; keys of no platform of the policy: %s", strings.Join(r.UnknownKeys, ", "))
			}
			fmt.Fprintln(w, "; re-encrypt with stepseal crypt rotate, then release the new digest")
		case r.Encrypted:
			fmt.Fprintf(w, "  ok   %s: encrypted to exactly %s\n", r.Path, strings.Join(r.Platforms, ", "))
		default:
			fmt.Fprintf(w, "  ok   %s: not encrypted, as its rule says\n", r.Path)
		}
	}
	for _, e := range rep.Refused {
		fmt.Fprintf(w, "  refused by TUF: %s\n", e)
	}
	if rep.Stale != "" {
		fmt.Fprintf(w, "%s\n", rep.Stale)
	}
}

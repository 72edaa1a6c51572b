package cmd

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

// trustSigner loads a private key file (cosign keys take COSIGN_PASSWORD or
// a prompt) or a KMS key URI.
func trustSigner(ctx context.Context, ref string) (signing.Signer, error) {
	if signing.IsKMSURI(ref) {
		return signing.KMSSigner(ctx, ref)
	}
	return signing.LoadSigner(ref, signing.EnvOrPrompt)
}

func trustSigners(ctx context.Context, refs []string) ([]signing.Signer, error) {
	out := make([]signing.Signer, 0, len(refs))
	for _, r := range refs {
		s, err := trustSigner(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func trustPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return signing.ParsePublicKeyPEM(b)
}

// trustKeyID takes a TUF key ID (64 hex digits) or a public key file.
func trustKeyID(s string) (string, error) {
	if len(s) == 64 {
		if _, err := hex.DecodeString(s); err == nil {
			return s, nil
		}
	}
	pub, err := trustPublicKey(s)
	if err != nil {
		return "", fmt.Errorf("%q is neither a TUF key ID nor a public key file: %w", s, err)
	}
	return repo.KeyID(pub)
}

type proposalReport struct {
	Proposal string `json:"proposal"`
	Role     string `json:"role"`
	Version  int64  `json:"version"`
}

// writeProposal writes a proposal file and reports it.
func writeProposal(cmd *cobra.Command, ro *rootOptions, out, role string, version int64, b []byte) error {
	if err := signing.WriteFileAtomic(out, b, 0o644); err != nil {
		return err
	}
	r := proposalReport{Proposal: out, Role: role, Version: version}
	return ro.print(cmd.OutOrStdout(), r, func(w io.Writer) {
		fmt.Fprintf(w, "wrote %s: proposal for %s v%d; co-signers run `stepseal trust sign --proposal`, the publisher `stepseal trust accept`\n", out, role, version)
	})
}

func proposalVersion(b []byte) int64 {
	var v struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	_ = json.Unmarshal(b, &v)
	return v.Signed.Version
}

type trustInitReport struct {
	Dir           string   `json:"dir"`
	RootKeyIDs    []string `json:"rootKeyIDs"`
	TargetsKeyIDs []string `json:"targetsKeyIDs"`
	OnlineKeyID   string   `json:"onlineKeyID"`
	Root          string   `json:"root"`
}

func newTrustInit(ro *rootOptions) *cobra.Command {
	var rootKeys, targetsKeys []string
	var online string
	var rootT, targetsT int
	var e repo.Expiry
	c := &cobra.Command{
		Use:   "init DIR --root-key KEY... --targets-key KEY... --online-key KEY",
		Short: "Create a TUF repository: root, targets, snapshot and timestamp v1",
		Long: `Create a TUF repository in DIR: root v1 (consistent snapshots) listing the
root keys (all sign it), the targets keys and the online key (snapshot and
timestamp), an empty targets v1, snapshot and timestamp v1. Keys are private
key files (cosign keys take COSIGN_PASSWORD), or KMS URIs in a binary that
links the sigstore KMS provider; generate files with
` + "`stepseal keys generate`" + `. No private key is written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rs, err := trustSigners(ctx, rootKeys)
			if err != nil {
				return err
			}
			ts, err := trustSigners(ctx, targetsKeys)
			if err != nil {
				return err
			}
			if online == "" {
				return fmt.Errorf("--online-key is required")
			}
			onl, err := trustSigner(ctx, online)
			if err != nil {
				return err
			}
			if _, err := repo.Init(ctx, args[0], repo.InitOptions{RootSigners: rs, RootThreshold: rootT, TargetsSigners: ts, TargetsThreshold: targetsT, Online: onl, Expiry: e}); err != nil {
				return err
			}
			rep := trustInitReport{Dir: args[0], Root: args[0] + "/" + repo.MetadataDir + "/1.root.json"}
			for _, s := range rs {
				id, _ := repo.KeyID(s.Public())
				rep.RootKeyIDs = append(rep.RootKeyIDs, id)
			}
			for _, s := range ts {
				id, _ := repo.KeyID(s.Public())
				rep.TargetsKeyIDs = append(rep.TargetsKeyIDs, id)
			}
			rep.OnlineKeyID, _ = repo.KeyID(onl.Public())
			return ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				fmt.Fprintf(w, "created TUF repository %s; clients bootstrap from %s\n", rep.Dir, rep.Root)
				fmt.Fprintf(w, "  root keys %v, targets keys %v, online key %s\n", rep.RootKeyIDs, rep.TargetsKeyIDs, rep.OnlineKeyID)
			})
		},
	}
	f := c.Flags()
	f.StringArrayVar(&rootKeys, "root-key", nil, "root private key file or KMS URI (repeatable)")
	f.IntVar(&rootT, "root-threshold", 1, "root signatures required")
	f.StringArrayVar(&targetsKeys, "targets-key", nil, "top-level targets private key file or KMS URI (repeatable)")
	f.IntVar(&targetsT, "targets-threshold", 1, "targets signatures required")
	f.StringVar(&online, "online-key", "", "snapshot and timestamp key: file or KMS URI")
	d := repo.DefaultExpiry()
	f.DurationVar(&e.Root, "root-expiry", d.Root, "root validity")
	f.DurationVar(&e.Targets, "targets-expiry", d.Targets, "targets and team roles' validity")
	f.DurationVar(&e.Snapshot, "snapshot-expiry", d.Snapshot, "snapshot validity")
	f.DurationVar(&e.Timestamp, "timestamp-expiry", d.Timestamp, "timestamp validity")
	return c
}

func newTrustDelegate(ro *rootOptions) *cobra.Command {
	var d repo.Delegation
	var keys, signKeys []string
	var out string
	c := &cobra.Command{
		Use:   "delegate DIR --role NAME --path PATTERN... --key PUB... --sign-key KEY --out FILE",
		Short: "Propose a team role for path patterns, signed by the delegating role's key",
		Long: `Propose the parent's next version delegating PATTERNs to a new team role
with its developers' public keys and threshold. Patterns are literal segments
and whole-segment * (oci/registry.example.com/payments/*,
layouts/payments.layout). Delegations are terminating; sibling patterns must
not overlap; a role has one parent; no cycles; names [a-z0-9][a-z0-9-]{0,62}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			r, err := repo.Open(args[0], repo.OpenOptions{})
			if err != nil {
				return err
			}
			for _, k := range keys {
				pub, err := trustPublicKey(k)
				if err != nil {
					return err
				}
				d.Keys = append(d.Keys, pub)
			}
			ss, err := trustSigners(cmd.Context(), signKeys)
			if err != nil {
				return err
			}
			b, err := r.Delegate(cmd.Context(), d, ss...)
			if err != nil {
				return err
			}
			return writeProposal(cmd, ro, out, d.Parent, proposalVersion(b), b)
		},
	}
	f := c.Flags()
	f.StringVar(&d.Parent, "parent", repo.RoleTargets, "delegating role")
	f.StringVar(&d.Name, "role", "", "the team role's name")
	f.StringArrayVar(&d.Paths, "path", nil, "path pattern (repeatable)")
	f.StringArrayVar(&keys, "key", nil, "a developer's public key file (repeatable)")
	f.IntVar(&d.Threshold, "threshold", 1, "signatures required on the team role")
	f.BoolVar(&d.NonTerminating, "non-terminating", false, "let clients search later siblings (off: terminating)")
	f.StringArrayVar(&signKeys, "sign-key", nil, "the parent's private key file or KMS URI (repeatable)")
	f.StringVar(&out, "out", "", "proposal file to write")
	return c
}

func newTrustSign(ro *rootOptions) *cobra.Command {
	var role, path, sha, proposal, out, remove, file, image string
	var length int64
	var keys []string
	var reg registryFlags
	c := &cobra.Command{
		Use:   "sign DIR --role ROLE (--path PATH (--file FILE | --sha256 HEX --length N) | --image REF) --key KEY --out FILE",
		Short: "Sign a release into your role (offline), or co-sign a proposal",
		Long: `Propose ROLE's next version with PATH bound to its sha256 and length, signed
with your key. --file FILE takes them from a file (a layout, a policy, a key;
the publisher then hosts the file with 'trust accept --target-file PATH=FILE').
--image REF asks the registry for the manifest's digest and size and names the
target oci/<registry>/<repository>:<tag> (unless --path says otherwise); without
a registry, give --sha256 and --length of the manifest. DIR is the repository
or any published copy of it. Without --path the role's targets are re-signed at
the next version (after a key rotation); --remove PATH drops a target.
With --proposal FILE, add your signature to an existing proposal (co-signing
for a threshold above 1); the publisher merges the copies.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			ss, err := trustSigners(ctx, keys)
			if err != nil {
				return err
			}
			if len(ss) == 0 {
				return fmt.Errorf("--key is required")
			}
			if proposal != "" {
				b, err := os.ReadFile(proposal)
				if err != nil {
					return err
				}
				for _, s := range ss {
					if b, err = repo.SignProposal(ctx, b, s); err != nil {
						return err
					}
				}
				return writeProposal(cmd, ro, out, proposalRole(b), proposalVersion(b), b)
			}
			if len(args) != 1 || role == "" {
				return fmt.Errorf("DIR and --role are required (or --proposal)")
			}
			r, err := repo.Open(args[0], repo.OpenOptions{})
			if err != nil {
				return err
			}
			var b []byte
			if remove != "" {
				b, err = r.Remove(ctx, role, remove, ss...)
			} else {
				if path, sha, length, err = releaseTarget(ctx, &reg, path, sha, length, file, image); err != nil {
					return err
				}
				b, err = r.Release(ctx, role, path, repo.Target{SHA256: sha, Length: length}, ss...)
			}
			if err != nil {
				return err
			}
			return writeProposal(cmd, ro, out, role, proposalVersion(b), b)
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "your role")
	f.StringVar(&path, "path", "", "target path (oci/<registry>/<repository>:<tag>, layouts/<name>.layout, ...)")
	f.StringVar(&sha, "sha256", "", "the target's sha256 (hex, sha256: prefix allowed)")
	f.Int64Var(&length, "length", 0, "the target's length in bytes (an OCI manifest's size)")
	f.StringVar(&file, "file", "", "the target's file: its sha256 and length are computed")
	f.StringVar(&image, "image", "", "an OCI image or artifact reference: the manifest's digest and size are asked of the registry")
	f.StringVar(&remove, "remove", "", "target path to remove")
	f.StringArrayVar(&keys, "key", nil, "your private key file or KMS URI (repeatable)")
	f.StringVar(&proposal, "proposal", "", "co-sign this proposal file")
	f.StringVar(&out, "out", "", "proposal file to write")
	reg.add(c)
	return c
}

// releaseTarget is the path, sha256 and length a release binds: given, or
// from --file, or from the registry for --image.
func releaseTarget(ctx context.Context, reg *registryFlags, path, sha string, length int64, file, image string) (string, string, int64, error) {
	sources := 0
	for _, set := range []bool{sha != "" || length != 0, file != "", image != ""} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return "", "", 0, fmt.Errorf("give one of --sha256/--length, --file and --image")
	}
	switch {
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", "", 0, err
		}
		sum := sha256.Sum256(data)
		return path, hex.EncodeToString(sum[:]), int64(len(data)), nil
	case image != "":
		c, err := reg.client()
		if err != nil {
			return "", "", 0, err
		}
		ref, err := c.ParseReference(image)
		if err != nil {
			return "", "", 0, err
		}
		d, size, err := c.Describe(ctx, ref)
		if err != nil {
			return "", "", 0, err
		}
		if path == "" {
			path = "oci/" + ref.Context().RegistryStr() + "/" + ref.Context().RepositoryStr() + ":" + ref.Identifier()
			if _, isDigest := ref.(name.Digest); isDigest {
				path = "oci/" + ref.Context().RegistryStr() + "/" + ref.Context().RepositoryStr() + "@" + ref.Identifier()
			}
		}
		return path, strings.TrimPrefix(d.DigestStr(), "sha256:"), size, nil
	}
	return path, strings.TrimPrefix(sha, "sha256:"), length, nil
}

func proposalRole(b []byte) string {
	var v struct {
		Signed map[string]any `json:"signed"`
	}
	_ = json.Unmarshal(b, &v)
	if r, ok := v.Signed[repo.RoleField].(string); ok {
		return r
	}
	r, _ := v.Signed["_type"].(string)
	return r
}

func newTrustRotate(ro *rootOptions) *cobra.Command {
	var role, old, nw, out string
	var root bool
	var signKeys, addKeys, removeKeys, thresholds []string
	c := &cobra.Command{
		Use:   "rotate DIR (--role ROLE --old KEYID|PUB --new PUB | --root --add-key ROLE=PUB --remove-key ROLE=KEYID|PUB --threshold ROLE=N) --sign-key KEY --out FILE",
		Short: "Propose a key rotation: a team role's key (by its delegator) or root's keys",
		Long: `With --role: propose the delegator's next version with the old key replaced
by the new one, signed by the delegator's --sign-key. The new key's holder then
re-signs the role (` + "`stepseal trust sign DIR --role ROLE --key NEW --out`" + ` without
--path) and the publisher accepts both files in one ` + "`trust accept`" + `.
With --root: propose root's next version; it needs a threshold of the current
root keys and a threshold of the new root keys (co-sign with ` + "`trust sign --proposal`" + `).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			r, err := repo.Open(args[0], repo.OpenOptions{})
			if err != nil {
				return err
			}
			ss, err := trustSigners(ctx, signKeys)
			if err != nil {
				return err
			}
			if root {
				ch := repo.RootChange{Add: map[string][]crypto.PublicKey{}, Remove: map[string][]string{}, Thresholds: map[string]int{}}
				for _, kv := range addKeys {
					k, v, _ := strings.Cut(kv, "=")
					pub, err := trustPublicKey(v)
					if err != nil {
						return err
					}
					ch.Add[k] = append(ch.Add[k], pub)
				}
				for _, kv := range removeKeys {
					k, v, _ := strings.Cut(kv, "=")
					id, err := trustKeyID(v)
					if err != nil {
						return err
					}
					ch.Remove[k] = append(ch.Remove[k], id)
				}
				for _, kv := range thresholds {
					k, v, _ := strings.Cut(kv, "=")
					n, err := strconv.Atoi(v)
					if err != nil {
						return fmt.Errorf("--threshold %s: %w", kv, err)
					}
					ch.Thresholds[k] = n
				}
				b, err := r.RotateRoot(ctx, ch, ss...)
				if err != nil {
					return err
				}
				return writeProposal(cmd, ro, out, repo.RoleRoot, proposalVersion(b), b)
			}
			if role == "" || old == "" || nw == "" {
				return fmt.Errorf("--role, --old and --new are required (or --root)")
			}
			oldID, err := trustKeyID(old)
			if err != nil {
				return err
			}
			pub, err := trustPublicKey(nw)
			if err != nil {
				return err
			}
			b, err := r.RotateKey(ctx, role, oldID, pub, ss...)
			if err != nil {
				return err
			}
			return writeProposal(cmd, ro, out, proposalRole(b), proposalVersion(b), b)
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "team role whose key rotates")
	f.StringVar(&old, "old", "", "old key: TUF key ID or public key file")
	f.StringVar(&nw, "new", "", "new public key file")
	f.BoolVar(&root, "root", false, "rotate root's keys instead")
	f.StringArrayVar(&addKeys, "add-key", nil, "with --root: ROLE=PUB, a key to add to a top-level role (repeatable)")
	f.StringArrayVar(&removeKeys, "remove-key", nil, "with --root: ROLE=KEYID|PUB, a key to remove (repeatable)")
	f.StringArrayVar(&thresholds, "threshold", nil, "with --root: ROLE=N, a new threshold (repeatable)")
	f.StringArrayVar(&signKeys, "sign-key", nil, "the delegator's (or root's) private key file or KMS URI (repeatable)")
	f.StringVar(&out, "out", "", "proposal file to write")
	return c
}

func newTrustRevoke(ro *rootOptions) *cobra.Command {
	var role, key, reason, out string
	var signKeys []string
	c := &cobra.Command{
		Use:   "revoke DIR --role ROLE --key KEYID|PUB --sign-key KEY --out FILE",
		Short: "Propose revoking a team role's key (by its delegator), recorded for clients",
		Long: `Propose the delegator's next version without the key in ROLE's delegation,
recording {role, keyid, version, reason, date} in its signed
x-stepseal-revocations field. The role keeps its snapshot entry; if its current
metadata no longer meets the threshold, clients refuse it until it is re-signed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" || role == "" || key == "" {
				return fmt.Errorf("--role, --key and --out are required")
			}
			r, err := repo.Open(args[0], repo.OpenOptions{})
			if err != nil {
				return err
			}
			id, err := trustKeyID(key)
			if err != nil {
				return err
			}
			ss, err := trustSigners(cmd.Context(), signKeys)
			if err != nil {
				return err
			}
			b, err := r.RevokeKey(cmd.Context(), role, id, reason, ss...)
			if err != nil {
				return err
			}
			return writeProposal(cmd, ro, out, proposalRole(b), proposalVersion(b), b)
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "team role")
	f.StringVar(&key, "key", "", "key to revoke: TUF key ID or public key file")
	f.StringVar(&reason, "reason", "", "why (recorded)")
	f.StringArrayVar(&signKeys, "sign-key", nil, "the delegator's private key file or KMS URI (repeatable)")
	f.StringVar(&out, "out", "", "proposal file to write")
	return c
}

// trustAcceptReport is what `stepseal trust accept` prints.
type trustAcceptReport struct {
	*repo.Change
	TargetFiles []string `json:"targetFiles,omitempty"`
}

func newTrustAccept(ro *rootOptions) *cobra.Command {
	var online, published string
	var reg registryFlags
	var files []string
	c := &cobra.Command{
		Use:   "accept DIR [PROPOSAL...] --online-key KEY [--target-file PATH=FILE...]",
		Short: "The publisher's gate: check proposals, then re-sign snapshot and timestamp",
		Long: `Accept proposals — all or none. Each must parse strictly, be signed by the
threshold of its role's current delegation, bump the version, keep its targets
inside its delegated paths and expire within bounds; copies of one proposal
signed by different co-signers are merged. Then snapshot and timestamp are
re-signed with the online key. Without proposals, only snapshot and timestamp
are re-signed (run it well within the timestamp's expiry).
--target-file PATH=FILE hosts FILE as target PATH's file (published under
targets/), after the proposals are accepted, only if a role then lists PATH
with FILE's sha256 and length; with --target-file and no proposal, nothing is
re-signed and no online key is needed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hosted := map[string][]byte{}
			var order []string
			for _, tf := range files {
				p, file, ok := strings.Cut(tf, "=")
				if !ok || p == "" || file == "" {
					return fmt.Errorf("--target-file %q: want PATH=FILE", tf)
				}
				data, err := readCapped(file, trust.DefaultMaxTargetSize)
				if err != nil {
					return err
				}
				if len(data) > trust.DefaultMaxTargetSize {
					return fmt.Errorf("--target-file %s: larger than the %d bytes clients fetch", file, trust.DefaultMaxTargetSize)
				}
				hosted[p] = data
				order = append(order, p)
			}
			if len(args) == 1 && len(files) > 0 {
				r, err := repo.Open(args[0], repo.OpenOptions{})
				if err != nil {
					return err
				}
				return hostTargets(cmd, ro, r, &repo.Change{}, hosted, order)
			}
			if online == "" {
				return fmt.Errorf("--online-key is required")
			}
			s, err := trustSigner(cmd.Context(), online)
			if err != nil {
				return err
			}
			r, err := repo.Open(args[0], repo.OpenOptions{Online: s})
			if err != nil {
				return err
			}
			var ps [][]byte
			for _, p := range args[1:] {
				b, err := readCapped(p, repo.MaxMetadataSize)
				if err != nil {
					return err
				}
				ps = append(ps, b)
			}
			if published != "" {
				rc, err := reg.client()
				if err != nil {
					return err
				}
				if err := r.Follow(cmd.Context(), published, rc); err != nil {
					return err
				}
			}
			var ch *repo.Change
			if len(ps) == 0 {
				ch, err = r.Tick(cmd.Context())
			} else {
				ch, err = r.Accept(cmd.Context(), ps...)
			}
			if err != nil {
				return err
			}
			return hostTargets(cmd, ro, r, ch, hosted, order)
		},
	}
	c.Flags().StringVar(&online, "online-key", "", "snapshot and timestamp key: file or KMS URI")
	c.Flags().StringArrayVar(&files, "target-file", nil, "PATH=FILE: host FILE as the file of target PATH (repeatable)")
	c.Flags().StringVar(&published, "published", "", "where the repository is published (directory or oci://): number snapshot and timestamp above the versions the online re-signer (trust resign, the controller) published there")
	reg.add(c)
	return c
}

// hostTargets adds the target files to the repository after ch (the
// accepted change, empty when only files are added) and prints the report.
func hostTargets(cmd *cobra.Command, ro *rootOptions, r *repo.Repo, ch *repo.Change, files map[string][]byte, order []string) error {
	rep := trustAcceptReport{Change: ch}
	var err error
	for _, p := range order {
		if err = r.AddTargetFile(p, files[p]); err != nil {
			break
		}
		rep.TargetFiles = append(rep.TargetFiles, p)
	}
	if perr := ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
		for _, rv := range ch.Roles {
			fmt.Fprintf(w, "accepted %s v%d\n", rv.Role, rv.Version)
		}
		if ch.Snapshot > 0 {
			fmt.Fprintf(w, "signed snapshot v%d, timestamp v%d\n", ch.Snapshot, ch.Timestamp)
		}
		for _, u := range ch.Unverifiable {
			fmt.Fprintf(w, "warning: %s's current metadata no longer meets its delegation: clients refuse it until it is re-signed\n", u)
		}
		for _, p := range rep.TargetFiles {
			fmt.Fprintf(w, "hosting %s\n", p)
		}
	}); perr != nil {
		return perr
	}
	return err
}

// readCapped reads a file of at most max bytes (one more is read to tell).
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	return b, nil
}

type trustPublishReport struct {
	Destination string   `json:"destination"`
	Written     []string `json:"written"`
}

func newTrustPublish(ro *rootOptions) *cobra.Command {
	var reg registryFlags
	c := &cobra.Command{
		Use:   "publish DIR DST|oci://REGISTRY/REPOSITORY [--insecure]",
		Short: "Publish the repository: hosted target files, then metadata (roots, roles, snapshot, timestamp last)",
		Long: `Copy the repository to DST (DST/targets, then DST/metadata), for trust serve
or any static web server; or push it to an OCI repository (oci://registry/repo):
each metadata file a one-layer artifact tagged with its file name, each hosted
target file one tagged target.<sha256>, timestamp.json last. Clients take the
same oci:// reference as their --source. A published version is never
rewritten.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := repo.Open(args[0], repo.OpenOptions{})
			if err != nil {
				return err
			}
			var written []string
			where := args[1] + "/"
			if trust.IsOCI(args[1]) {
				c, err := reg.client()
				if err != nil {
					return err
				}
				written, err = r.PublishOCI(cmd.Context(), c, args[1])
				if err != nil {
					return err
				}
				where = args[1]
			} else if written, err = r.Publish(cmd.Context(), args[1]); err != nil {
				return err
			}
			rep := trustPublishReport{Destination: args[1], Written: written}
			if rep.Written == nil {
				rep.Written = []string{}
			}
			return ro.print(cmd.OutOrStdout(), rep, func(w io.Writer) {
				fmt.Fprintf(w, "published %d files to %s\n", len(written), where)
			})
		},
	}
	reg.add(c)
	return c
}

func newTrustServe(ro *rootOptions) *cobra.Command {
	var addr string
	var allowRemote bool
	c := &cobra.Command{
		Use:   "serve DIR [--addr 127.0.0.1:PORT]",
		Short: "Serve a published directory over HTTP (metadata URL: http://ADDR/metadata)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := repo.CheckListenAddr(addr, allowRemote); err != nil {
				return err
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving %s; metadata URL http://%s/%s\n", args[0], l.Addr(), repo.MetadataDir)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			return repo.Serve(ctx, l, args[0])
		},
	}
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	c.Flags().BoolVar(&allowRemote, "allow-remote", false, "allow a non-loopback listen address")
	return c
}

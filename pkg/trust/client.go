package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// Source is the base URL of the repository's metadata
	// (<Source>/timestamp.json, <Source>/<v>.root.json, …).
	Source string
	// Mirrors are tried in order, each for a whole refresh, when a refresh
	// from Source fails: like Source, they are not trusted, only what they
	// serve once it verifies.
	Mirrors []string
	// CacheDir holds the trusted metadata between runs. Its root.json IS
	// the trusted root; it is created with mode 0700 if missing.
	CacheDir string
	// BootstrapRoot is a root.json used only when CacheDir has none. A
	// cached root is never replaced by it (that would allow rolling the
	// client back to an older root whose keys an attacker holds).
	BootstrapRoot []byte
	// Now is the clock expiry is checked against; time.Now if nil.
	Now func() time.Time
	// FileTimeout bounds each download (default 30 s). The whole Refresh
	// is bounded by the caller's ctx.
	FileTimeout time.Duration
	// MaxRoleSize caps snapshot.json, targets.json and each delegated role
	// (default DefaultMaxRoleSize), whatever length the snapshot claims.
	MaxRoleSize int64
	// MaxRoles caps the delegated roles loaded under one refresh's
	// snapshot, by lookups and LoadAll together (default 10 000);
	// MaxDepth the length of a delegation chain (default 16).
	MaxRoles, MaxDepth int
	// HTTPClient sends the requests (default: a fresh client, never
	// http.DefaultClient).
	HTTPClient *http.Client
	// TargetsURL is the base URL of the target files Fetch downloads
	// (default: Source's sibling "targets", <base>/metadata →
	// <base>/targets, as `stepseal trust publish` lays them out).
	TargetsURL string
	// MaxTargetSize caps a target file Fetch downloads (default
	// DefaultMaxTargetSize).
	MaxTargetSize int64
	// Registry reads an oci:// Source (default: a client that takes the
	// usual docker credentials and speaks HTTPS only).
	Registry *oci.Client
	// Floor, for a consumer without a cache of its own: a newer root than
	// BootstrapRoot to start from, and the lowest versions it accepts.
	Floor *Floor
	// RootSHA256, when set (lower-case hex), pins the root the client
	// starts from: the cached root.json, else the Floor's root, else
	// BootstrapRoot, else — with neither given — the repository's own
	// 1.root.json, downloaded from Source. A root of another digest is
	// ErrRootPin and nothing is trusted. A consumer without a cache (a
	// Task's Pod) so needs only the URL and this digest; after root
	// rotations it still starts from version 1 and walks the signed chain.
	RootSHA256 string
}

// Client is stepseal's TUF client. Refresh verifies the repository's
// metadata with go-tuf and swaps an immutable verified state that Resolve,
// VerifyArtifact and Status read; all methods are safe for concurrent use.
type Client struct {
	o     ClientOptions
	mu    sync.Mutex // serializes Refresh
	state atomic.Pointer[state]

	smu         sync.Mutex
	lastRefresh time.Time
	lastErr     error
}

// state is one verified view of the repository: root, timestamp, snapshot
// and top-level targets are fixed when it is stored; delegated roles are
// loaded into it lazily (Resolve, LoadAll), each verified against this
// state's snapshot, so a Refresh (a new state) invalidates them all.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	refTime   time.Time

	// source is where this state was verified from (Source or a mirror):
	// delegated roles are fetched from it. offline: from the cache only.
	source  string
	offline bool
	// prev are the roles verified in the previous state, reused when the
	// snapshot names the same version, length and hashes (reusable).
	prev map[string]*loadedRole
	// cached are the top-level files the cache held when this state's
	// refresh began (read and guarded once, for staging), so that a
	// process's first Refresh can say what changed since the last run;
	// dropped once used.
	cached map[string][]byte

	// lmu serializes the loading of delegated roles: go-tuf's trusted set
	// (trusted) is not safe for concurrent use.
	lmu     sync.Mutex
	trusted *trustedmetadata.TrustedMetadata
	// all is set once LoadAll walked the whole delegation tree.
	all bool

	// mu guards the maps below; they only grow.
	mu    sync.RWMutex
	roles map[string]*loadedRole // "targets" and the delegated roles loaded
	// parents are the delegator through which each delegated role was
	// first reached (a second one is a diamond).
	parents map[string]string
	loaded  int
	// refused are roles no resolution may pass through (diamonds, names
	// outside the rule, limits, roles that failed verification).
	refused map[string]error
	// cycles are delegation edges (parent→child) back to an ancestor.
	cycles map[[2]string]error
	// signedBy memoizes, per role, the TUF key IDs whose signatures verify
	// (computed on the first Resolve that needs it).
	signedBy sync.Map
}

func (st *state) role(name string) *loadedRole {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.roles[name]
}

// rolesCopy returns a copy of the roles loaded so far.
func (st *state) rolesCopy() map[string]*loadedRole {
	st.mu.RLock()
	defer st.mu.RUnlock()
	m := make(map[string]*loadedRole, len(st.roles))
	for k, v := range st.roles {
		m[k] = v
	}
	return m
}

type loadedRole struct {
	md     *metadata.Metadata[metadata.TargetsType]
	parent string // "root" for targets
	raw    []byte
}

// NewClient checks o and prepares CacheDir. It does not go to the network.
func NewClient(ctx context.Context, o ClientOptions) (*Client, error) {
	if o.Source == "" || o.CacheDir == "" {
		return nil, errors.New("trust: Source and CacheDir are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FileTimeout <= 0 {
		o.FileTimeout = 30 * time.Second
	}
	if o.MaxRoleSize <= 0 {
		o.MaxRoleSize = DefaultMaxRoleSize
	}
	if o.MaxTargetSize <= 0 {
		o.MaxTargetSize = DefaultMaxTargetSize
	}
	if o.MaxRoles <= 0 {
		o.MaxRoles = 10_000
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 16
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, &Error{Category: ErrUnavailable, Detail: "cache directory", Err: err}
	}
	if _, err := os.Stat(filepath.Join(o.CacheDir, "root.json")); errors.Is(err, fs.ErrNotExist) && len(o.BootstrapRoot) == 0 && (o.Floor == nil || len(o.Floor.Root) == 0) && o.RootSHA256 == "" {
		return nil, errors.New("trust: the cache has no root.json and no BootstrapRoot was given")
	}
	return &Client{o: o}, nil
}

// safely runs f, turning a panic of go-tuf into ErrMalformed: the second
// line of defence behind checkMetadata.
func safely(role string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Category: ErrMalformed, Role: role, Detail: fmt.Sprintf("go-tuf panicked: %v", r)}
		}
	}()
	return f()
}

// Refresh runs TUF's client workflow against Source: a new go-tuf Updater
// in a staging directory seeded with the cached files that pass the guard,
// (1) root versions one by one from the trusted root, (2) timestamp,
// (3) snapshot, (4) top-level targets. Only when all of that verifies are
// the files written to CacheDir and the new state swapped in; on error the
// cache and the state are unchanged. Delegated roles are loaded by the
// lookups that need them (Resolve) or by LoadAll, under the new state.
func (c *Client) Refresh(ctx context.Context) (*Changes, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.state.Load()
	var st *state
	var f *fetcher
	var errs []error
	for _, src := range append([]string{c.o.Source}, c.o.Mirrors...) {
		var err error
		if st, f, err = c.refresh(ctx, src, false); err == nil {
			break
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	var err error
	if st == nil {
		err = firstRefusal(errs)
	} else {
		err = c.commit(st)
	}
	c.smu.Lock()
	c.lastRefresh, c.lastErr = c.o.Now(), err
	c.smu.Unlock()
	if err != nil {
		return nil, err
	}
	if before == nil {
		before = cachedVersions(st.cached, st)
	}
	st.cached = nil
	ch := diff(before, st, f)
	ch.Files = acceptedFiles(ch, st, f)
	ch.previous = previousTargets(before, ch, c.o.CacheDir)
	ch.chains = previousChains(before, ch)
	if !ch.Updated {
		if fi, err := os.Stat(filepath.Join(c.o.CacheDir, "timestamp.json")); err == nil {
			ch.UnchangedSince = fi.ModTime().UTC().Truncate(time.Second)
		}
	}
	dropTopLevelRaw(st)
	c.state.Store(st)
	return ch, nil
}

// acceptedFiles are the metadata files a refresh accepted, by their
// consistent names: every root version walked, and timestamp, snapshot and
// top-level targets when their version moved.
func acceptedFiles(ch *Changes, st *state, f *fetcher) map[string][]byte {
	files := map[string][]byte{}
	f.mu.Lock()
	for v, b := range f.roots {
		files[fmt.Sprintf("%d.root.json", v)] = b
	}
	f.mu.Unlock()
	if lr := st.roles["root"]; ch.Root.From == 0 && lr != nil && lr.raw != nil {
		// The root this client started from (bootstrap): the start of
		// the history.
		files[fmt.Sprintf("%d.root.json", ch.Root.To)] = lr.raw
	}
	for role, vc := range map[string]VersionChange{"timestamp": ch.Timestamp, "snapshot": ch.Snapshot, "targets": ch.Targets} {
		if lr := st.roles[role]; lr != nil && lr.raw != nil && vc.From != vc.To {
			files[fmt.Sprintf("%d.%s.json", vc.To, role)] = lr.raw
		}
	}
	return files
}

// dropTopLevelRaw lets the bytes of the top-level files go once they are
// in the cache (only delegated roles' bytes are compared again, by
// reusable), before st is published.
func dropTopLevelRaw(st *state) {
	for role := range topLevelRoles {
		if lr := st.roles[role]; lr != nil {
			st.roles[role] = &loadedRole{md: lr.md, parent: lr.parent}
		}
	}
}

// LoadCache makes the metadata in CacheDir the client's state without
// going to the network, when the client has no state yet: go-tuf verifies
// the cached files (signatures, versions, expiry at Now) against the cached
// root; delegated roles are then loaded from the cache only, by lookups
// and LoadAll, and checked as after a Refresh (a role missing from the
// cache is ErrUnavailable). The cache is not written. For a process that must answer before, or
// without, a successful Refresh.
func (c *Client) LoadCache(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != nil {
		return nil
	}
	st, _, err := c.refresh(ctx, c.o.Source, true)
	if err != nil {
		return err
	}
	st.cached = nil
	dropTopLevelRaw(st)
	c.state.Store(st)
	return nil
}

// firstRefusal returns, of the errors of the sources tried, the first that
// is a refusal (a source serving something that does not verify says more
// than one that cannot be reached), else the first.
func firstRefusal(errs []error) error {
	for _, err := range errs {
		if errors.Is(err, reject.ErrRefused) {
			return err
		}
	}
	return errs[0]
}

func (c *Client) refresh(ctx context.Context, source string, offline bool) (*state, *fetcher, error) {
	rootPath := filepath.Join(c.o.CacheDir, "root.json")
	rootBytes, err := os.ReadFile(rootPath)
	cached := map[string][]byte{}
	if err == nil {
		cached["root"] = rootBytes
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && offline:
		return nil, nil, &Error{Category: ErrUnavailable, Role: "root", Detail: "the cache has no trusted root"}
	case errors.Is(err, fs.ErrNotExist):
		rootBytes = c.o.BootstrapRoot
		if fl := c.o.Floor; fl != nil && len(fl.Root) > 0 && (len(rootBytes) == 0 || rootVersion(fl.Root) > rootVersion(rootBytes)) {
			rootBytes = fl.Root
		}
		if len(rootBytes) == 0 && c.o.RootSHA256 != "" {
			f0 := &fetcher{ctx: ctx, source: source, client: c.o.HTTPClient, reg: c.o.Registry, timeout: c.o.FileTimeout, maxRole: c.o.MaxRoleSize, roots: map[int64][]byte{}}
			if rootBytes, err = f0.DownloadFile(strings.TrimSuffix(source, "/")+"/1.root.json", maxRootSize, 0); err != nil {
				return nil, nil, err
			}
		}
		if err := checkMetadata("root", rootBytes, maxRootSize); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, &Error{Category: ErrUnavailable, Role: "root", Detail: "cannot read the cached root", Err: err}
	default:
		if err := checkMetadata("root", rootBytes, maxRootSize); err != nil {
			// Never fall back to the bootstrap root: that is a rollback.
			return nil, nil, &Error{Category: ErrUnavailable, Role: "root", Detail: "the cached trusted root " + rootPath + " is corrupt; restore it or remove the cache to bootstrap again", Err: err}
		}
	}
	if err := checkRootPin(c.o.RootSHA256, rootBytes); err != nil {
		return nil, nil, err
	}
	removeStale(c.o.CacheDir)
	staging, err := os.MkdirTemp(c.o.CacheDir, ".refresh-")
	if err != nil {
		return nil, nil, &Error{Category: ErrUnavailable, Detail: "cache directory", Err: err}
	}
	defer os.RemoveAll(staging)
	for _, role := range []string{"timestamp", "snapshot", "targets"} {
		// A cached file that fails the guard is left out: go-tuf then
		// downloads it again, as it does for a cached file that no longer
		// verifies.
		if data, err := os.ReadFile(filepath.Join(c.o.CacheDir, role+".json")); err == nil && checkMetadata(role, data, maxSizeOf(role, c.o.MaxRoleSize)) == nil {
			if err := os.WriteFile(filepath.Join(staging, role+".json"), data, 0o600); err != nil {
				return nil, nil, &Error{Category: ErrUnavailable, Detail: "staging directory", Err: err}
			}
			cached[role] = data
		}
	}
	f := &fetcher{ctx: ctx, source: source, client: c.o.HTTPClient, reg: c.o.Registry, timeout: c.o.FileTimeout, maxRole: c.o.MaxRoleSize, roots: map[int64][]byte{}, offline: offline}
	cfg, err := config.New(source, rootBytes)
	if err != nil {
		return nil, nil, &Error{Category: ErrUnavailable, Detail: "source URL", Err: err}
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = staging, staging
	cfg.Fetcher = f
	cfg.UnsafeLocalMode = offline
	cfg.SnapshotMaxLength, cfg.TargetsMaxLength = c.o.MaxRoleSize, c.o.MaxRoleSize
	var u *updater.Updater
	if err := safely("root", func() (err error) { u, err = updater.New(cfg); return err }); err != nil {
		return nil, nil, classify(err, "root")
	}
	refTime := c.o.Now()
	u.UnsafeSetRefTime(refTime)
	if err := safely("", u.Refresh); err != nil {
		return nil, nil, c.classifyRefresh(ctx, err, u, f)
	}
	trusted := u.GetTrustedMetadataSet()
	st := &state{
		root: trusted.Root, timestamp: trusted.Timestamp, snapshot: trusted.Snapshot,
		roles: map[string]*loadedRole{}, parents: map[string]string{"targets": "root"},
		refused: map[string]error{}, cycles: map[[2]string]error{}, refTime: refTime,
		source: source, offline: offline, trusted: &trusted, cached: cached,
	}
	if prev := c.state.Load(); prev != nil {
		st.prev = prev.rolesCopy()
	}
	raw := map[string][]byte{}
	for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
		if raw[role], err = os.ReadFile(filepath.Join(staging, role+".json")); err != nil {
			return nil, nil, &Error{Category: ErrUnavailable, Role: role, Detail: "staging directory", Err: err}
		}
	}
	st.roles["targets"] = &loadedRole{md: trusted.Targets["targets"], parent: "root", raw: raw["targets"]}
	st.roles["root"] = &loadedRole{raw: raw["root"]}
	st.roles["timestamp"] = &loadedRole{raw: raw["timestamp"]}
	st.roles["snapshot"] = &loadedRole{raw: raw["snapshot"]}
	if err := checkFloor(c.o.Floor, st); err != nil {
		return nil, nil, err
	}
	return st, f, nil
}

// classifyRefresh names the role go-tuf's error is about (its message
// says; when it names none, the role of the file the fetcher handed go-tuf
// last), the TUF key IDs that should have signed it, and what to do about
// a timestamp rollback.
func (c *Client) classifyRefresh(ctx context.Context, err error, u *updater.Updater, f *fetcher) error {
	if ctx.Err() != nil {
		var te *Error
		if !errors.As(err, &te) {
			return &Error{Category: ErrTimeout, Detail: "the refresh's deadline passed", Err: err}
		}
	}
	role := ""
	msg := err.Error()
	for _, r := range []string{"root", "timestamp", "snapshot", "targets"} {
		if strings.Contains(msg, r) {
			role = r
			break
		}
	}
	if role == "" && f != nil && topLevelRoles[f.lastRole()] {
		role = f.lastRole()
	}
	e := classify(err, role)
	te, ok := e.(*Error)
	if !ok || te.Role == "" || !topLevelRoles[te.Role] {
		return e
	}
	trusted := u.GetTrustedMetadataSet()
	switch {
	case te.Category == ErrUnsigned && len(te.KeyIDs) == 0 && trusted.Root != nil:
		if r := trusted.Root.Signed.Roles[te.Role]; r != nil {
			te.KeyIDs = r.KeyIDs
			te.Detail = fmt.Sprintf("needs %d of the keys root v%d names", r.Threshold, trusted.Root.Signed.Version)
		}
	case te.Category == ErrFreeze && te.Detail == "":
		// Say which version expired when: the trusted set holds the
		// expired file (go-tuf loads it, then refuses it as final).
		var v int64
		var exp time.Time
		switch te.Role {
		case "timestamp":
			if trusted.Timestamp != nil {
				v, exp = trusted.Timestamp.Signed.Version, trusted.Timestamp.Signed.Expires
			}
		case "snapshot":
			if trusted.Snapshot != nil {
				v, exp = trusted.Snapshot.Signed.Version, trusted.Snapshot.Signed.Expires
			}
		case "targets":
			if t := trusted.Targets["targets"]; t != nil {
				v, exp = t.Signed.Version, t.Signed.Expires
			}
		case "root":
			if trusted.Root != nil {
				v, exp = trusted.Root.Signed.Version, trusted.Root.Signed.Expires
			}
		}
		if !exp.IsZero() {
			te.Version = v
			te.Detail = fmt.Sprintf("expired at %s (%s ago): the repository is frozen or its online roles were not re-signed", exp.UTC().Format(time.RFC3339), c.o.Now().Sub(exp).Round(time.Second))
		}
	case te.Category == ErrRollback && te.Role == "timestamp":
		te.Detail = "older than the trusted timestamp; if the repository really restarted lower, its timestamp key was used to fast-forward and must be rotated in root"
	}
	return te
}

// LoadAll loads and verifies every delegated role of the current state,
// in pre-order from the top-level targets, and checks stepseal's
// delegation rules over the whole tree: a role delegated by two roles
// (diamond) is refused even when a lookup would only have visited one of
// them, and a path listed by a role that is not delegated it is told
// apart from a path no role lists. Resolve loads only the roles on a
// path's way; LoadAll is the full check, for `trust status --all`. A role
// that fails to verify is refused (resolutions through it fail with its
// error) rather than failing the others; a timeout stops the walk and is
// returned.
func (c *Client) LoadAll(ctx context.Context) error {
	st := c.state.Load()
	if st == nil {
		return &Error{Category: ErrUnavailable, Detail: "no verified metadata yet: Refresh first"}
	}
	return c.loadAll(ctx, st)
}

func (c *Client) loadAll(ctx context.Context, st *state) error {
	st.lmu.Lock()
	done := st.all
	st.lmu.Unlock()
	if done {
		return nil
	}
	var visit func(role string, chain []string) error
	visit = func(role string, chain []string) error {
		md := st.role(role).md
		if md.Signed.Delegations == nil {
			return nil
		}
		for _, dr := range md.Signed.Delegations.Roles {
			if _, err := c.step(ctx, st, role, dr.Name, chain); err != nil {
				if isTimeout(err) || ctx.Err() != nil {
					return err
				}
				continue
			}
			if err := visit(dr.Name, append(chain[:len(chain):len(chain)], dr.Name)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit("targets", []string{"targets"}); err != nil {
		return err
	}
	st.lmu.Lock()
	st.all = true
	st.lmu.Unlock()
	return nil
}

// step goes from role parent, reached through chain, to its delegated role
// child, applying stepseal's delegation rules to that edge, and returns
// child verified (loaded now, or earlier in this state). The edge is
// refused if child is on chain (cycle), if child's name breaks the rule,
// if child was reached before through another delegator (diamond: among
// the roles this state has loaded; LoadAll loads them all), beyond
// MaxDepth or MaxRoles, or if child does not verify. Refusals are
// remembered for the state; timeouts and an unreachable repository are
// not.
func (c *Client) step(ctx context.Context, st *state, parent, child string, chain []string) (*loadedRole, error) {
	if contains(chain, child) {
		err := &Error{Category: ErrDelegationCycle, Role: child,
			Detail: fmt.Sprintf("%s delegates back to %s (chain %s)", parent, child, strings.Join(append(chain[:len(chain):len(chain)], child), " → "))}
		st.mu.Lock()
		st.cycles[[2]string{parent, child}] = err
		st.mu.Unlock()
		return nil, err
	}
	st.mu.RLock()
	lr, p, refused := st.roles[child], st.parents[child], st.refused[child]
	st.mu.RUnlock()
	if refused == nil && lr != nil && p == parent {
		return lr, nil
	}
	st.lmu.Lock()
	defer st.lmu.Unlock()
	refuse := func(err error) (*loadedRole, error) {
		st.mu.Lock()
		st.refused[child] = err
		st.mu.Unlock()
		return nil, err
	}
	st.mu.RLock()
	lr, p, refused = st.roles[child], st.parents[child], st.refused[child]
	loaded := st.loaded
	st.mu.RUnlock()
	switch {
	case !ValidRoleName(child):
		return refuse(&Error{Category: ErrUnsupported, Role: child,
			Detail: fmt.Sprintf("delegated by %s under a name outside [a-z0-9][a-z0-9-]{0,62} or reserved", parent)})
	case p != "" && p != parent:
		if te, ok := refused.(*Error); ok && te.Category == ErrDiamondDelegation {
			return nil, refused
		}
		return refuse(&Error{Category: ErrDiamondDelegation, Role: child,
			Detail: fmt.Sprintf("delegated by both %s and %s", p, parent)})
	case refused != nil:
		return nil, refused
	case lr != nil:
		return lr, nil
	case len(chain) >= c.o.MaxDepth || loaded >= c.o.MaxRoles:
		st.mu.Lock()
		st.parents[child] = parent
		st.mu.Unlock()
		return refuse(&Error{Category: ErrDelegationLimit, Role: child,
			Detail: fmt.Sprintf("beyond %d roles or a chain of %d", c.o.MaxRoles, c.o.MaxDepth)})
	}
	f := &fetcher{ctx: ctx, source: st.source, client: c.o.HTTPClient, reg: c.o.Registry, timeout: c.o.FileTimeout, maxRole: c.o.MaxRoleSize, roots: map[int64][]byte{}, offline: st.offline}
	lr, err := c.loadRole(ctx, f, st, child, parent)
	if err != nil {
		// A repository that could not be reached (timeout, network, a
		// server error) is tried again by the next lookup; a refusal is
		// remembered for the state.
		if ctx.Err() != nil || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		st.mu.Lock()
		st.parents[child] = parent
		st.loaded++
		st.mu.Unlock()
		return refuse(err)
	}
	st.mu.Lock()
	st.parents[child] = parent
	st.loaded++
	st.roles[child] = lr
	st.mu.Unlock()
	return lr, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// loadRole verifies role (delegated by parent) with go-tuf's
// UpdateDelegatedTargets (threshold of the delegator's keys, version,
// length and hashes from the snapshot, expiry at the refresh's time): the
// copy this process verified in the previous state when the snapshot
// names the same file, else the cached file if it is the version the
// snapshot names, else from the state's source (then written to the
// cache). Every byte passes the guard first. Called with st.lmu held.
func (c *Client) loadRole(ctx context.Context, f *fetcher, st *state, role, parent string) (*loadedRole, error) {
	trusted := st.trusted
	meta, ok := st.snapshot.Signed.Meta[role+".json"]
	if !ok || meta == nil {
		return nil, &Error{Category: ErrMixAndMatch, Role: role, Detail: fmt.Sprintf("delegated by %s but not in snapshot v%d", parent, st.snapshot.Signed.Version)}
	}
	if lr := reusable(st, role, parent, meta); lr != nil {
		trusted.Targets[role] = lr.md
		return lr, nil
	}
	update := func(data []byte) (*metadata.Metadata[metadata.TargetsType], error) {
		var md *metadata.Metadata[metadata.TargetsType]
		err := safely(role, func() (err error) { md, err = trusted.UpdateDelegatedTargets(data, role, parent); return err })
		return md, err
	}
	if data, err := os.ReadFile(filepath.Join(c.o.CacheDir, role+".json")); err == nil && checkMetadata(role, data, c.o.MaxRoleSize) == nil {
		if md, err := update(data); err == nil {
			return &loadedRole{md: md, parent: parent, raw: data}, nil
		}
	}
	length := meta.Length
	if length > c.o.MaxRoleSize {
		return nil, &Error{Category: ErrTooLarge, Role: role, Version: meta.Version, Detail: fmt.Sprintf("snapshot gives %d bytes, more than the cap of %d", length, c.o.MaxRoleSize)}
	}
	name := role + ".json"
	if st.root.Signed.ConsistentSnapshot {
		name = strconv.FormatInt(meta.Version, 10) + "." + name
	}
	data, err := f.DownloadFile(strings.TrimSuffix(f.source, "/")+"/"+name, length, 0)
	if err != nil {
		return nil, classify(err, role)
	}
	md, err := update(data)
	if err != nil {
		e := classify(err, role)
		var te *Error
		if errors.As(e, &te) && te.Version == 0 {
			te.Version = meta.Version
			if te.Category == ErrUnsigned {
				te.KeyIDs = delegatedKeyIDs(st.role(parent).md, role)
				te.Detail = "not signed by a threshold of the keys " + parent + " delegates it to"
				if why := c.revokedSigners(st, data, role, parent); why != "" {
					te.Detail += "; " + why
				}
			}
		}
		return nil, e
	}
	// Verified against the trusted snapshot: cache it for the next
	// process (best effort; the cache's snapshot may have moved on, and a
	// file of another version is simply downloaded again).
	_ = writeFileAtomic(filepath.Join(c.o.CacheDir, role+".json"), data, false)
	return &loadedRole{md: md, parent: parent, raw: data}, nil
}

// reusable returns role as this process verified it in the previous state
// when verifying it again would give the same result: the snapshot names
// the same version, length and hashes, the delegator delegates it with the
// same keys and threshold, and it has not expired since. A long-running
// verifier then pays, per refresh, only for the roles that changed.
func reusable(st *state, role, parent string, meta *metadata.MetaFiles) *loadedRole {
	prev := st.prev
	if prev == nil {
		return nil
	}
	old, ok := prev[role]
	if !ok || old.md == nil || old.parent != parent || old.md.Signed.Version != meta.Version || old.md.Signed.IsExpired(st.refTime) {
		return nil
	}
	if safely(role, func() error { return meta.VerifyLengthHashes(old.raw) }) != nil {
		return nil
	}
	was, is := prev[parent], st.role(parent)
	if was == nil || was.md == nil || is == nil || is.md == nil || !sameDelegation(was.md, is.md, role) {
		return nil
	}
	return &loadedRole{md: old.md, parent: parent, raw: old.raw}
}

// sameDelegation reports whether a and b delegate role with the same key
// IDs, keys and threshold.
func sameDelegation(a, b *metadata.Metadata[metadata.TargetsType], role string) bool {
	find := func(md *metadata.Metadata[metadata.TargetsType]) *metadata.DelegatedRole {
		if md.Signed.Delegations == nil {
			return nil
		}
		for i := range md.Signed.Delegations.Roles {
			if md.Signed.Delegations.Roles[i].Name == role {
				return &md.Signed.Delegations.Roles[i]
			}
		}
		return nil
	}
	da, db := find(a), find(b)
	if da == nil || db == nil || da.Threshold != db.Threshold || len(da.KeyIDs) != len(db.KeyIDs) {
		return false
	}
	for i, id := range da.KeyIDs {
		if db.KeyIDs[i] != id {
			return false
		}
		ka, kb := a.Signed.Delegations.Keys[id], b.Signed.Delegations.Keys[id]
		if ka == nil || kb == nil || ka.Type != kb.Type || ka.Scheme != kb.Scheme || ka.Value.PublicKey != kb.Value.PublicKey {
			return false
		}
	}
	return true
}

// revokedSigners names the keys that signed role's data and that parent
// delegated role to before (in this process's previous state, else in the
// cache) but no longer does: a revoked or rotated-out key still signing.
func (c *Client) revokedSigners(st *state, data []byte, role, parent string) string {
	if why := recordedRevocations(st.role(parent).md, data, role, parent); why != "" {
		return why
	}
	var before *metadata.Metadata[metadata.TargetsType]
	if p := st.prev[parent]; p != nil && p.md != nil {
		before = p.md
	} else if cached, err := os.ReadFile(filepath.Join(c.o.CacheDir, parent+".json")); err == nil && checkMetadata(parent, cached, c.o.MaxRoleSize) == nil {
		_ = safely(parent, func() (err error) {
			before, err = (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(cached)
			return err
		})
	}
	if before == nil {
		return ""
	}
	var env mdEnvelope
	if json.Unmarshal(data, &env) != nil || env.Signatures == nil {
		return ""
	}
	now, was := map[string]bool{}, map[string]bool{}
	cur := st.role(parent).md
	for _, id := range delegatedKeyIDs(cur, role) {
		now[id] = true
	}
	for _, id := range delegatedKeyIDs(before, role) {
		was[id] = true
	}
	var revoked []string
	for _, sig := range *env.Signatures {
		if id := *sig.KeyID; was[id] && !now[id] {
			revoked = append(revoked, id)
		}
	}
	if len(revoked) == 0 {
		return ""
	}
	return fmt.Sprintf("signed by %s, removed from %s's delegation of %s in %s v%d (trusted before at v%d)",
		strings.Join(revoked, ", "), parent, role, parent, cur.Signed.Version, before.Signed.Version)
}

// RevocationsField is the signed field in which `stepseal trust revoke`
// records, in the delegator, which key of which role was revoked in which
// of its versions (repo.RevocationsField; the repository package imports
// this one).
const RevocationsField = "x-stepseal-revocations"

// recordedRevocations names the keys that signed role's data and that the
// delegator's signed revocation records say were revoked: what lets a
// client that never trusted the key say why it is refused.
func recordedRevocations(parent *metadata.Metadata[metadata.TargetsType], data []byte, role, parentName string) string {
	if parent == nil {
		return ""
	}
	list, ok := parent.Signed.UnrecognizedFields[RevocationsField].([]any)
	if !ok {
		return ""
	}
	var env mdEnvelope
	if json.Unmarshal(data, &env) != nil || env.Signatures == nil {
		return ""
	}
	signed := map[string]bool{}
	for _, sig := range *env.Signatures {
		if sig.KeyID != nil {
			signed[*sig.KeyID] = true
		}
	}
	current := map[string]bool{}
	for _, id := range delegatedKeyIDs(parent, role) {
		current[id] = true
	}
	var out []string
	for _, item := range list {
		rec, ok := item.(map[string]any)
		if !ok {
			continue
		}
		r, _ := rec["role"].(string)
		id, _ := rec["keyid"].(string)
		v, _ := rec["version"].(float64)
		if r != role || !signed[id] || current[id] {
			continue
		}
		msg := fmt.Sprintf("signed by %s, revoked from %s in %s v%d", id, role, parentName, int64(v))
		if date, _ := rec["date"].(string); date != "" {
			msg += " on " + date
		}
		if reason, _ := rec["reason"].(string); reason != "" {
			msg += fmt.Sprintf(" (%q)", reason)
		}
		out = append(out, msg)
	}
	return strings.Join(out, "; ")
}

func delegatedKeyIDs(parent *metadata.Metadata[metadata.TargetsType], role string) []string {
	if parent == nil || parent.Signed.Delegations == nil {
		return nil
	}
	for _, dr := range parent.Signed.Delegations.Roles {
		if dr.Name == role {
			return dr.KeyIDs
		}
	}
	return nil
}

// commit writes st's files into CacheDir, root first (so that a crash
// leaves files the cached root can judge), each by temporary file and
// rename.
func (c *Client) commit(st *state) error {
	names := []string{"root", "timestamp", "snapshot", "targets"}
	var rest []string
	for name := range st.roles {
		if !topLevelRoles[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range append(names, rest...) {
		// Only root.json is synced: it cannot be fetched again if lost,
		// while any other file that a crash truncates fails the guard or
		// go-tuf's checks at the next refresh and is downloaded again.
		if err := writeFileAtomic(filepath.Join(c.o.CacheDir, name+".json"), st.roles[name].raw, name == "root"); err != nil {
			return &Error{Category: ErrUnavailable, Role: name, Detail: "writing the cache", Err: err}
		}
	}
	return nil
}

// removeStale removes staging directories and temporary files that a
// process killed during a refresh left behind, an hour or more ago (a
// refresh of another process sharing the cache may be using newer ones).
func removeStale(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".refresh-") && !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func writeFileAtomic(path string, data []byte, sync bool) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// cachedVersions parses the cached top-level files (state.cached), as the state before
// st; a file identical to st's is not parsed again (the snapshot and
// targets of a warm cache are the bulk of the bytes).
func cachedVersions(cached map[string][]byte, st *state) *state {
	before := &state{roles: map[string]*loadedRole{}}
	now := st.rolesCopy()
	same := func(role string) bool { return now[role] != nil && bytes.Equal(cached[role], now[role].raw) }
	_ = safely("", func() error {
		if data := cached["root"]; data != nil {
			before.root, _ = (&metadata.Metadata[metadata.RootType]{}).FromBytes(data)
		}
		if data := cached["timestamp"]; data != nil {
			before.timestamp, _ = (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(data)
		}
		if same("snapshot") {
			before.snapshot = st.snapshot
		} else if data := cached["snapshot"]; data != nil {
			before.snapshot, _ = (&metadata.Metadata[metadata.SnapshotType]{}).FromBytes(data)
		}
		if same("targets") {
			before.roles["targets"] = &loadedRole{md: now["targets"].md}
		} else if data := cached["targets"]; data != nil {
			if md, err := (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(data); err == nil {
				before.roles["targets"] = &loadedRole{md: md}
			}
		}
		return nil
	})
	return before
}

// rawJSON returns a target's custom field.
func rawJSON(m *json.RawMessage) json.RawMessage {
	if m == nil {
		return nil
	}
	return *m
}

// checkRootPin refuses a starting root whose sha256 is not pin (no pin:
// nothing to check).
func checkRootPin(pin string, root []byte) error {
	if pin == "" {
		return nil
	}
	d := sha256.Sum256(root)
	if got := hex.EncodeToString(d[:]); got != strings.ToLower(pin) {
		return &Error{Category: ErrRootPin, Role: "root", Version: rootVersion(root),
			Detail: fmt.Sprintf("the root to start from has sha256 %s, the pin is %s", got, pin)}
	}
	return nil
}

package repo

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/signing"
)

// MetadataDir is the directory, inside a repository and inside a published
// tree, that holds the metadata in consistent-snapshot layout:
// <version>.<role>.json for every role and version, and timestamp.json.
const MetadataDir = "metadata"

const configFile = "repo.json"

const day = 24 * time.Hour

// Expiry holds how long each kind of role's metadata stays valid when the
// repository (re)signs it.
type Expiry struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiry: root 365 days, targets and team roles 90 days, snapshot 7
// days, timestamp 1 day.
func DefaultExpiry() Expiry {
	return Expiry{Root: 365 * day, Targets: 90 * day, Snapshot: 7 * day, Timestamp: day}
}

// Bounds are the latest expiries Accept allows, counted from now.
type Bounds struct {
	Root, Targets time.Duration
}

// DefaultBounds: root 2 years, targets and team roles 1 year.
func DefaultBounds() Bounds { return Bounds{Root: 731 * day, Targets: 366 * day} }

// config is repo.json, beside the metadata directory.
type repoConfig struct {
	ExpirySeconds struct {
		Root      int64 `json:"root"`
		Targets   int64 `json:"targets"`
		Snapshot  int64 `json:"snapshot"`
		Timestamp int64 `json:"timestamp"`
	} `json:"expirySeconds"`
	MaxExpirySeconds struct {
		Root    int64 `json:"root"`
		Targets int64 `json:"targets"`
	} `json:"maxExpirySeconds"`
}

func newConfig(e Expiry, b Bounds) repoConfig {
	var cfg repoConfig
	cfg.ExpirySeconds.Root, cfg.ExpirySeconds.Targets = int64(e.Root/time.Second), int64(e.Targets/time.Second)
	cfg.ExpirySeconds.Snapshot, cfg.ExpirySeconds.Timestamp = int64(e.Snapshot/time.Second), int64(e.Timestamp/time.Second)
	cfg.MaxExpirySeconds.Root, cfg.MaxExpirySeconds.Targets = int64(b.Root/time.Second), int64(b.Targets/time.Second)
	return cfg
}

func defaultConfig() repoConfig { return newConfig(DefaultExpiry(), DefaultBounds()) }

func (c *repoConfig) expiry() Expiry {
	s := func(n int64) time.Duration { return time.Duration(n) * time.Second }
	e := c.ExpirySeconds
	return Expiry{Root: s(e.Root), Targets: s(e.Targets), Snapshot: s(e.Snapshot), Timestamp: s(e.Timestamp)}
}

func (c *repoConfig) bounds() Bounds {
	return Bounds{Root: time.Duration(c.MaxExpirySeconds.Root) * time.Second, Targets: time.Duration(c.MaxExpirySeconds.Targets) * time.Second}
}

// InitOptions configures a new repository.
type InitOptions struct {
	// RootSigners are the root keys; RootThreshold of them (default 1) sign
	// root version 1 — all of them sign it here.
	RootSigners   []signing.Signer
	RootThreshold int
	// TargetsSigners are the top-level targets keys (offline: they sign
	// delegations of teams); TargetsThreshold defaults to 1.
	TargetsSigners   []signing.Signer
	TargetsThreshold int
	// Online signs snapshot and timestamp (a KMS key is fine): the
	// publisher's key.
	Online signing.Signer
	// Expiry of newly signed metadata; zero fields take DefaultExpiry's.
	Expiry Expiry
	// Bounds on the expiries Accept allows; zero fields take DefaultBounds'.
	Bounds Bounds
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// OpenOptions configures an opened repository.
type OpenOptions struct {
	// Online is the snapshot and timestamp key; Accept and Tick need it.
	Online signing.Signer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Repo is a TUF repository in a directory: repo.json (expiries and bounds)
// and metadata/ in consistent-snapshot layout, the same layout Publish
// copies out. A Repo is not safe for concurrent use; one process (the
// publisher) writes snapshot and timestamp.
type Repo struct {
	dir    string
	cfg    repoConfig
	online signing.Signer
	now    func() time.Time
	st     *state
	// follow: versions published by the online re-signer (Follow); the
	// next snapshot and timestamp are numbered above them.
	follow struct{ snapshot, timestamp int64 }
}

// state is the current metadata, as parsed objects and their bytes. Objects
// are never mutated in place: changes replace them, so a clone is a shallow
// copy of the maps.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	rootRaw   []byte
	roles     map[string]*metadata.Metadata[metadata.TargetsType]
	raws      map[string][]byte
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
}

func (s *state) clone() *state {
	c := *s
	c.roles = make(map[string]*metadata.Metadata[metadata.TargetsType], len(s.roles))
	c.raws = make(map[string][]byte, len(s.raws))
	for k, v := range s.roles {
		c.roles[k] = v
	}
	for k, v := range s.raws {
		c.raws[k] = v
	}
	return &c
}

// Dir is the repository's directory.
func (r *Repo) Dir() string { return r.dir }

func (r *Repo) metaPath(name string) string { return filepath.Join(r.dir, MetadataDir, name) }

func expires(now time.Time, d time.Duration) time.Time {
	return now.UTC().Truncate(time.Second).Add(d)
}

// Init creates a repository in dir (which must not hold one): root v1 with
// the given keys and thresholds and consistent snapshots, an empty targets
// v1, and snapshot and timestamp v1 signed by the online key. No private key
// is written.
func Init(ctx context.Context, dir string, o InitOptions) (*Repo, error) {
	if len(o.RootSigners) == 0 || len(o.TargetsSigners) == 0 || o.Online == nil {
		return nil, errors.New("init needs root signers, targets signers and an online signer")
	}
	if o.RootThreshold == 0 {
		o.RootThreshold = 1
	}
	if o.TargetsThreshold == 0 {
		o.TargetsThreshold = 1
	}
	if o.RootThreshold < 1 || o.RootThreshold > len(o.RootSigners) {
		return nil, &Error{Kind: ErrDelegation, Role: RoleRoot, Detail: fmt.Sprintf("threshold %d for %d keys", o.RootThreshold, len(o.RootSigners))}
	}
	if o.TargetsThreshold < 1 || o.TargetsThreshold > len(o.TargetsSigners) {
		return nil, &Error{Kind: ErrDelegation, Role: RoleTargets, Detail: fmt.Sprintf("threshold %d for %d keys", o.TargetsThreshold, len(o.TargetsSigners))}
	}
	if _, err := os.Stat(filepath.Join(dir, configFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a repository", dir)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, MetadataDir)); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s already holds metadata", filepath.Join(dir, MetadataDir))
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	e, d := DefaultExpiry(), o.Expiry
	for _, p := range []struct{ dst, src *time.Duration }{{&e.Root, &d.Root}, {&e.Targets, &d.Targets}, {&e.Snapshot, &d.Snapshot}, {&e.Timestamp, &d.Timestamp}} {
		if *p.src > 0 {
			*p.dst = p.src.Truncate(time.Second)
		}
	}
	b := DefaultBounds()
	if o.Bounds.Root > 0 {
		b.Root = o.Bounds.Root
	}
	if o.Bounds.Targets > 0 {
		b.Targets = o.Bounds.Targets
	}
	if e.Root > b.Root || e.Targets > b.Targets {
		return nil, &Error{Kind: ErrExpiryTooFar, Detail: fmt.Sprintf("root expiry %s (bound %s), targets expiry %s (bound %s)", e.Root, b.Root, e.Targets, b.Targets)}
	}
	cfg := newConfig(e, b)

	t := now()
	root := metadata.Root(expires(t, e.Root))
	root.Signed.ConsistentSnapshot = true
	add := func(role string, signers ...signing.Signer) error {
		for _, s := range signers {
			k, err := TUFKey(s.Public())
			if err != nil {
				return err
			}
			if err := root.Signed.AddKey(k, role); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(RoleRoot, o.RootSigners...); err != nil {
		return nil, err
	}
	if err := add(RoleTargets, o.TargetsSigners...); err != nil {
		return nil, err
	}
	if err := add(RoleSnapshot, o.Online); err != nil {
		return nil, err
	}
	if err := add(RoleTimestamp, o.Online); err != nil {
		return nil, err
	}
	root.Signed.Roles[RoleRoot].Threshold = o.RootThreshold
	root.Signed.Roles[RoleTargets].Threshold = o.TargetsThreshold
	if err := signAll(ctx, root, o.RootSigners); err != nil {
		return nil, err
	}
	rootRaw, err := root.ToBytes(true)
	if err != nil {
		return nil, err
	}
	targets := metadata.Targets(expires(t, e.Targets))
	targets.Signed.UnrecognizedFields = map[string]any{RoleField: RoleTargets}
	if err := signAll(ctx, targets, o.TargetsSigners); err != nil {
		return nil, err
	}
	targetsRaw, err := targets.ToBytes(true)
	if err != nil {
		return nil, err
	}
	r := &Repo{dir: dir, cfg: cfg, online: o.Online, now: now}
	st := &state{root: root, rootRaw: rootRaw,
		roles: map[string]*metadata.Metadata[metadata.TargetsType]{RoleTargets: targets},
		raws:  map[string][]byte{RoleTargets: targetsRaw}}
	if err := os.MkdirAll(filepath.Join(dir, MetadataDir), 0o755); err != nil {
		return nil, err
	}
	cb, _ := json.MarshalIndent(cfg, "", "  ")
	if err := signing.WriteFileAtomic(filepath.Join(dir, configFile), append(cb, '\n'), 0o644); err != nil {
		return nil, err
	}
	if _, err := r.commit(ctx, st, true, []string{RoleTargets}); err != nil {
		return nil, err
	}
	return r, nil
}

func signAll[T metadata.Roles](ctx context.Context, md *metadata.Metadata[T], signers []signing.Signer) error {
	for _, s := range signers {
		ts, err := TUFSigner(ctx, s)
		if err != nil {
			return err
		}
		if _, err := md.Sign(ts); err != nil {
			return fmt.Errorf("signing: %w", err)
		}
	}
	return nil
}

// Open reads the repository in dir.
func Open(dir string, o OpenOptions) (*Repo, error) {
	r := &Repo{dir: dir, online: o.Online, now: o.Now}
	if r.now == nil {
		r.now = time.Now
	}
	cb, err := os.ReadFile(filepath.Join(dir, configFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A published copy (Publish's destination) has no repo.json: a
		// developer signs a release against it with the default expiries.
		r.cfg = defaultConfig()
	case err != nil:
		return nil, &Error{Kind: ErrNotRepo, Detail: err.Error()}
	default:
		if err := json.Unmarshal(cb, &r.cfg); err != nil || r.cfg.ExpirySeconds.Timestamp <= 0 || r.cfg.MaxExpirySeconds.Targets <= 0 {
			return nil, &Error{Kind: ErrNotRepo, Detail: configFile + " is damaged"}
		}
	}
	st, err := loadState(filepath.Join(dir, MetadataDir))
	if err != nil {
		return nil, err
	}
	r.st = st
	return r, nil
}

func readMeta(dir, name string) ([]byte, header, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, header{}, &Error{Kind: ErrNotRepo, Detail: err.Error()}
	}
	h, err := parseStrict(b, false)
	if err != nil {
		return nil, h, fmt.Errorf("%s: %w", name, err)
	}
	return b, h, nil
}

// loadState reads the newest root (the highest N of N.root.json), then
// timestamp.json → its snapshot → every role the snapshot lists.
func loadState(dir string) (*state, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Kind: ErrNotRepo, Detail: err.Error()}
	}
	var rootV int64
	for _, e := range entries {
		if v, ok := strings.CutSuffix(e.Name(), ".root.json"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > rootV {
				rootV = n
			}
		}
	}
	if rootV == 0 {
		return nil, &Error{Kind: ErrNotRepo, Detail: "no N.root.json in " + dir}
	}
	st := &state{roles: map[string]*metadata.Metadata[metadata.TargetsType]{}, raws: map[string][]byte{}}
	b, _, err := readMeta(dir, fmt.Sprintf("%d.root.json", rootV))
	if err != nil {
		return nil, err
	}
	if st.root, err = decode[metadata.RootType](b, RoleRoot); err != nil {
		return nil, err
	}
	st.rootRaw = b
	if b, _, err = readMeta(dir, "timestamp.json"); err != nil {
		return nil, err
	}
	if st.timestamp, err = decode[metadata.TimestampType](b, RoleTimestamp); err != nil {
		return nil, err
	}
	sm := st.timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, &Error{Kind: ErrNotRepo, Detail: "timestamp names no snapshot"}
	}
	if b, _, err = readMeta(dir, fmt.Sprintf("%d.snapshot.json", sm.Version)); err != nil {
		return nil, err
	}
	if st.snapshot, err = decode[metadata.SnapshotType](b, RoleSnapshot); err != nil {
		return nil, err
	}
	for name, m := range st.snapshot.Signed.Meta {
		role, ok := strings.CutSuffix(name, ".json")
		if !ok || m == nil {
			return nil, &Error{Kind: ErrNotRepo, Detail: "bad snapshot entry " + name}
		}
		b, h, err := readMeta(dir, fmt.Sprintf("%d.%s.json", m.Version, role))
		if err != nil {
			return nil, err
		}
		if h.Role != role || h.Type != RoleTargets {
			return nil, &Error{Kind: ErrNotRepo, Detail: fmt.Sprintf("%d.%s.json names role %s", m.Version, role, h.Role)}
		}
		md, err := decode[metadata.TargetsType](b, role)
		if err != nil {
			return nil, err
		}
		st.roles[role], st.raws[role] = md, b
	}
	if st.roles[RoleTargets] == nil {
		return nil, &Error{Kind: ErrNotRepo, Detail: "snapshot lists no targets.json"}
	}
	return st, nil
}

// commit signs a new snapshot (every role's version, length and sha256) and
// timestamp (the snapshot's, likewise) with the online key and writes, in
// this order, the new root if rootChanged, the changed roles, the snapshot,
// then timestamp.json — each file atomically, so a reader of timestamp.json
// always finds everything it names. Only then is r.st replaced.
func (r *Repo) commit(ctx context.Context, st *state, rootChanged bool, changed []string) (*Change, error) {
	if r.online == nil {
		return nil, &Error{Kind: ErrOnlineKey, Detail: "no online key given"}
	}
	onlineID, err := KeyID(r.online.Public())
	if err != nil {
		return nil, err
	}
	for _, role := range []string{RoleSnapshot, RoleTimestamp} {
		rr := st.root.Signed.Roles[role]
		if rr == nil || rr.Threshold != 1 || !contains(rr.KeyIDs, onlineID) {
			return nil, &Error{Kind: ErrOnlineKey, Role: role, Key: onlineID, Detail: "root must list the online key with threshold 1"}
		}
	}
	// One writer at a time, and only over the state this Repo read: a second
	// publisher that opened the repository before the first one wrote would
	// otherwise sign the same snapshot version without the first's changes.
	lf, err := os.OpenFile(filepath.Join(r.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	if err := lockFile(lf); err != nil {
		return nil, err
	}
	if st.timestamp != nil {
		b, err := os.ReadFile(r.metaPath("timestamp.json"))
		if err != nil {
			return nil, &Error{Kind: ErrStale, Detail: err.Error()}
		}
		h, err := parseStrict(b, false)
		if err != nil || h.Version != st.timestamp.Signed.Version {
			return nil, &Error{Kind: ErrStale, Role: RoleTimestamp, Version: h.Version, Detail: fmt.Sprintf("opened at timestamp v%d", st.timestamp.Signed.Version)}
		}
	}
	t := r.now()
	e := r.cfg.expiry()
	snap := metadata.Snapshot(expires(t, e.Snapshot))
	snap.Signed.Meta = map[string]*metadata.MetaFiles{}
	if st.snapshot != nil {
		snap.Signed.Version = max(st.snapshot.Signed.Version, r.follow.snapshot) + 1
		for k, v := range st.snapshot.Signed.Meta {
			snap.Signed.Meta[k] = v
		}
	}
	for role, b := range st.raws {
		sum := sha256.Sum256(b)
		snap.Signed.Meta[role+".json"] = &metadata.MetaFiles{Version: st.roles[role].Signed.Version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": sum[:]}}
	}
	if err := signAll(ctx, snap, []signing.Signer{r.online}); err != nil {
		return nil, err
	}
	snapRaw, err := snap.ToBytes(true)
	if err != nil {
		return nil, err
	}
	ts := metadata.Timestamp(expires(t, e.Timestamp))
	if st.timestamp != nil {
		ts.Signed.Version = max(st.timestamp.Signed.Version, r.follow.timestamp) + 1
	}
	sum := sha256.Sum256(snapRaw)
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": {Version: snap.Signed.Version, Length: int64(len(snapRaw)), Hashes: metadata.Hashes{"sha256": sum[:]}}}
	if err := signAll(ctx, ts, []signing.Signer{r.online}); err != nil {
		return nil, err
	}
	tsRaw, err := ts.ToBytes(true)
	if err != nil {
		return nil, err
	}
	if rootChanged {
		if err := r.write(fmt.Sprintf("%d.root.json", st.root.Signed.Version), st.rootRaw); err != nil {
			return nil, err
		}
	}
	ch := &Change{Snapshot: snap.Signed.Version, Timestamp: ts.Signed.Version}
	if rootChanged {
		ch.Roles = append(ch.Roles, RoleVersion{Role: RoleRoot, Version: st.root.Signed.Version})
	}
	for _, role := range changed {
		v := st.roles[role].Signed.Version
		if err := r.write(fmt.Sprintf("%d.%s.json", v, role), st.raws[role]); err != nil {
			return nil, err
		}
		ch.Roles = append(ch.Roles, RoleVersion{Role: role, Version: v})
	}
	if err := r.write(fmt.Sprintf("%d.snapshot.json", snap.Signed.Version), snapRaw); err != nil {
		return nil, err
	}
	if err := r.write("timestamp.json", tsRaw); err != nil {
		return nil, err
	}
	st.snapshot, st.timestamp = snap, ts
	r.st = st
	ch.Unverifiable = unverifiable(st)
	return ch, nil
}

func (r *Repo) write(name string, b []byte) error {
	return signing.WriteFileAtomic(r.metaPath(name), b, 0o644)
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

// Change is what an Accept (or Tick) published.
type Change struct {
	Roles     []RoleVersion `json:"roles"`
	Snapshot  int64         `json:"snapshot"`
	Timestamp int64         `json:"timestamp"`
	// Unverifiable lists roles whose current metadata no longer meets its
	// delegation (after a revocation, until the role is re-signed): clients
	// refuse them, as they should.
	Unverifiable []string `json:"unverifiable,omitempty"`
}

// RoleVersion is a role at a version.
type RoleVersion struct {
	Role    string `json:"role"`
	Version int64  `json:"version"`
}

// Roles lists the roles with metadata, sorted, "targets" first.
func (r *Repo) Roles() []RoleVersion {
	var out []RoleVersion
	for role, md := range r.st.roles {
		out = append(out, RoleVersion{Role: role, Version: md.Signed.Version})
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Role == RoleTargets) != (out[j].Role == RoleTargets) {
			return out[i].Role == RoleTargets
		}
		return out[i].Role < out[j].Role
	})
	return out
}

// RootBytes is the newest root's metadata: what a client is bootstrapped
// with.
func (r *Repo) RootBytes() []byte { return r.st.rootRaw }

// Tick re-signs snapshot and timestamp with fresh versions and expiries:
// run it well within the timestamp's expiry.
func (r *Repo) Tick(ctx context.Context) (*Change, error) {
	return r.commit(ctx, r.st.clone(), false, nil)
}

package trust

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// VersionChange is a role's version before and after a Refresh (0: none).
type VersionChange struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// RoleChange is a delegated role whose version in the snapshot changed.
type RoleChange struct {
	Role string `json:"role"`
	VersionChange
}

// KeyChange is a TUF key ID added to or removed from a top-level role.
type KeyChange struct {
	Role   string `json:"role"`
	KeyID  string `json:"keyId"`
	Change string `json:"change"` // "added" or "removed"
}

// DelegationChange is a change in how a delegator delegates a role: the
// role "added" or "removed", a TUF key ID "key-added", "key-removed" or
// "key-revoked" (removed with a signed revocation record; Detail gives the
// delegator's version and the reason; a rotation is a key-added and a
// key-removed in one version), or
// its "threshold" or "paths" changed (Detail says from what to what).
type DelegationChange struct {
	Delegator string `json:"delegator"`
	Role      string `json:"role"`
	Change    string `json:"change"`
	KeyID     string `json:"keyId,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// Changes says what a Refresh changed in the trusted state.
type Changes struct {
	Updated   bool          `json:"updated"`
	Root      VersionChange `json:"root"`
	Timestamp VersionChange `json:"timestamp"`
	Snapshot  VersionChange `json:"snapshot"`
	Targets   VersionChange `json:"targets"`
	// Roots are the root versions downloaded and verified, in order.
	Roots []int64      `json:"roots,omitempty"`
	Roles []RoleChange `json:"roles,omitempty"`
	Keys  []KeyChange  `json:"keys,omitempty"`
	// Delegations are the changes in the delegations of the top-level
	// targets (a refresh loads no delegated role; for a process's first
	// refresh, against the targets as cached).
	Delegations []DelegationChange `json:"delegations,omitempty"`
	// Refused are the roles no resolution may pass through, and why: at
	// a refresh, none yet (roles are refused as lookups or LoadAll load
	// them; Status reports them).
	Refused  map[string]string `json:"refused,omitempty"`
	Requests int               `json:"requests"`
	Bytes    int64             `json:"bytes"`
	// UnchangedSince, when nothing was new, is when the trusted timestamp
	// last changed (the cache's copy is rewritten only on a change): a
	// repository whose timestamp stays the same for long is frozen or
	// stale, whatever its expiry says.
	UnchangedSince time.Time `json:"unchangedSince,omitzero"`
	// Files are the metadata files this refresh accepted, by consistent
	// name (<version>.<role>.json): each root version walked, and
	// timestamp, snapshot and top-level targets when they moved. The
	// snapshot binds every delegated role's version and hashes.
	Files map[string][]byte `json:"-"`
	// TargetChanges are the target paths added, removed or changed per
	// role, and TargetsNotCompared the roles whose paths were not
	// compared and why: both filled by Client.TargetChanges.
	// SuspectedFastForward names a top-level version that jumped by more
	// than FastForwardJump in this refresh: validly signed, so accepted,
	// but what a compromised online key does to lock clients out of the
	// repository's real versions.
	SuspectedFastForward string            `json:"suspectedFastForward,omitempty"`
	TargetChanges        []TargetChange    `json:"targetChanges,omitempty"`
	TargetsNotCompared   map[string]string `json:"targetsNotCompared,omitempty"`
	// previous are the target lists of the versions replaced
	// (previousTargets).
	previous map[string]*metadata.Metadata[metadata.TargetsType]
	// chains are the delegation chains of the changed roles the previous
	// state had loaded (previousChains, for LoadChanged).
	chains map[string][]string
}

func version[T metadata.Roles](md *metadata.Metadata[T], v func(*metadata.Metadata[T]) int64) int64 {
	if md == nil {
		return 0
	}
	return v(md)
}

func diff(before, after *state, f *fetcher) *Changes {
	ch := &Changes{
		Root:      VersionChange{version(before.root, rootV), after.root.Signed.Version},
		Timestamp: VersionChange{version(before.timestamp, tsV), after.timestamp.Signed.Version},
		Snapshot:  VersionChange{version(before.snapshot, snV), after.snapshot.Signed.Version},
		Requests:  f.requests, Bytes: f.bytes,
	}
	beforeRoles, afterRoles := before.rolesCopy(), after.rolesCopy()
	if t := beforeRoles["targets"]; t != nil && t.md != nil {
		ch.Targets.From = t.md.Signed.Version
	}
	ch.Targets.To = afterRoles["targets"].md.Signed.Version
	for v := range f.roots {
		ch.Roots = append(ch.Roots, v)
	}
	sort.Slice(ch.Roots, func(i, j int) bool { return ch.Roots[i] < ch.Roots[j] })
	old := map[string]int64{}
	if before.snapshot != nil {
		for name, m := range before.snapshot.Signed.Meta {
			old[name] = m.Version
		}
	}
	for name, m := range after.snapshot.Signed.Meta {
		if topLevelRoles[strings.TrimSuffix(name, ".json")] || old[name] == m.Version {
			continue
		}
		ch.Roles = append(ch.Roles, RoleChange{Role: strings.TrimSuffix(name, ".json"), VersionChange: VersionChange{old[name], m.Version}})
	}
	sort.Slice(ch.Roles, func(i, j int) bool { return ch.Roles[i].Role < ch.Roles[j].Role })
	if before.root != nil {
		for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
			was, is := keySet(before.root, role), keySet(after.root, role)
			for id := range is {
				if !was[id] {
					ch.Keys = append(ch.Keys, KeyChange{Role: role, KeyID: id, Change: "added"})
				}
			}
			for id := range was {
				if !is[id] {
					ch.Keys = append(ch.Keys, KeyChange{Role: role, KeyID: id, Change: "removed"})
				}
			}
		}
		sort.Slice(ch.Keys, func(i, j int) bool {
			a, b := ch.Keys[i], ch.Keys[j]
			return a.Role+a.Change+a.KeyID < b.Role+b.Change+b.KeyID
		})
	}
	for name, b := range beforeRoles {
		if a := afterRoles[name]; b.md != nil && a != nil && a.md != nil {
			ch.Delegations = append(ch.Delegations, delegationChanges(name, b.md, a.md)...)
		}
	}
	sort.Slice(ch.Delegations, func(i, j int) bool {
		a, b := ch.Delegations[i], ch.Delegations[j]
		return a.Delegator+"\x00"+a.Role+"\x00"+a.Change+a.KeyID < b.Delegator+"\x00"+b.Role+"\x00"+b.Change+b.KeyID
	})
	var jumps []string
	for _, r := range []struct {
		role string
		v    VersionChange
	}{{"timestamp", ch.Timestamp}, {"snapshot", ch.Snapshot}, {"targets", ch.Targets}} {
		if r.v.From > 0 && r.v.To-r.v.From > FastForwardJump {
			jumps = append(jumps, fmt.Sprintf("%s v%d → v%d", r.role, r.v.From, r.v.To))
		}
	}
	if len(jumps) > 0 {
		ch.SuspectedFastForward = strings.Join(jumps, ", ") + " in one refresh: if the repository did not sign these, its key was used to fast-forward clients past its real versions"
	}
	ch.Refused = refusedReasons(after)
	ch.Updated = ch.Root.From != ch.Root.To || ch.Timestamp.From != ch.Timestamp.To || ch.Snapshot.From != ch.Snapshot.To ||
		ch.Targets.From != ch.Targets.To || len(ch.Roles) > 0
	return ch
}

func delegationChanges(delegator string, before, after *metadata.Metadata[metadata.TargetsType]) []DelegationChange {
	roles := func(md *metadata.Metadata[metadata.TargetsType]) map[string]metadata.DelegatedRole {
		m := map[string]metadata.DelegatedRole{}
		if md.Signed.Delegations != nil {
			for _, r := range md.Signed.Delegations.Roles {
				m[r.Name] = r
			}
		}
		return m
	}
	was, is := roles(before), roles(after)
	var out []DelegationChange
	add := func(role, change, keyID, detail string) {
		out = append(out, DelegationChange{Delegator: delegator, Role: role, Change: change, KeyID: keyID, Detail: detail})
	}
	for name, a := range is {
		b, ok := was[name]
		if !ok {
			add(name, "added", "", strings.Join(a.Paths, " "))
			continue
		}
		ids := map[string]bool{}
		for _, id := range b.KeyIDs {
			ids[id] = true
		}
		for _, id := range a.KeyIDs {
			if !ids[id] {
				add(name, "key-added", id, "")
			}
			delete(ids, id)
		}
		revoked := revocationReasons(after, name)
		for id := range ids {
			if reason, ok := revoked[id]; ok {
				detail := fmt.Sprintf("in %s v%d", delegator, after.Signed.Version)
				if reason != "" {
					detail += ": " + reason
				}
				add(name, "key-revoked", id, detail)
				continue
			}
			add(name, "key-removed", id, fmt.Sprintf("in %s v%d", delegator, after.Signed.Version))
		}
		if a.Threshold != b.Threshold {
			add(name, "threshold", "", fmt.Sprintf("%d → %d", b.Threshold, a.Threshold))
		}
		if strings.Join(a.Paths, " ") != strings.Join(b.Paths, " ") || strings.Join(a.PathHashPrefixes, " ") != strings.Join(b.PathHashPrefixes, " ") {
			add(name, "paths", "", strings.Join(append(b.Paths, b.PathHashPrefixes...), " ")+" → "+strings.Join(append(a.Paths, a.PathHashPrefixes...), " "))
		}
	}
	for name := range was {
		if _, ok := is[name]; !ok {
			add(name, "removed", "", "")
		}
	}
	return out
}

// revocationReasons maps the TUF key IDs the delegator's signed
// revocation records name for role to the reason given.
func revocationReasons(delegator *metadata.Metadata[metadata.TargetsType], role string) map[string]string {
	out := map[string]string{}
	list, _ := delegator.Signed.UnrecognizedFields[RevocationsField].([]any)
	for _, item := range list {
		rec, _ := item.(map[string]any)
		if r, _ := rec["role"].(string); r == role {
			if id, _ := rec["keyid"].(string); id != "" {
				out[id], _ = rec["reason"].(string)
			}
		}
	}
	return out
}

func rootV(m *metadata.Metadata[metadata.RootType]) int64    { return m.Signed.Version }
func tsV(m *metadata.Metadata[metadata.TimestampType]) int64 { return m.Signed.Version }
func snV(m *metadata.Metadata[metadata.SnapshotType]) int64  { return m.Signed.Version }

func keySet(root *metadata.Metadata[metadata.RootType], role string) map[string]bool {
	set := map[string]bool{}
	if r := root.Signed.Roles[role]; r != nil {
		for _, id := range r.KeyIDs {
			set[id] = true
		}
	}
	return set
}

func refusedReasons(st *state) map[string]string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if len(st.refused)+len(st.cycles) == 0 {
		return nil
	}
	m := map[string]string{}
	for role, err := range st.refused {
		m[role] = err.Error()
	}
	for e, err := range st.cycles {
		m[e[0]+"→"+e[1]] = err.Error()
	}
	return m
}

// RoleStatus is one trusted role's version and expiry.
type RoleStatus struct {
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Parent    string    `json:"parent,omitempty"`
	Threshold int       `json:"threshold,omitempty"`
	// KeyIDs are TUF key IDs.
	KeyIDs      []string `json:"keyIds,omitempty"`
	Paths       []string `json:"paths,omitempty"`
	Terminating bool     `json:"terminating,omitempty"`
	Targets     int      `json:"targets"`
}

// Status is what the client trusts now, for `stepseal trust status`.
type Status struct {
	Source      string    `json:"source"`
	CacheDir    string    `json:"cacheDir"`
	LastRefresh time.Time `json:"lastRefresh,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	Trusted     bool      `json:"trusted"`
	// AllLoaded says whether Roles are every delegated role (LoadAll ran
	// on this state) or only those lookups have loaded so far.
	AllLoaded bool `json:"allLoaded"`
	// Delegated is the number of delegated roles the snapshot names,
	// Loaded those loaded and verified so far.
	Delegated int          `json:"delegated"`
	Loaded    int          `json:"loaded"`
	Roles     []RoleStatus `json:"roles,omitempty"`
	// Refused are the roles no resolution may pass through, and why.
	Refused  map[string]string `json:"refused,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	// SuspectedFastForward, when the last refresh was refused as a
	// rollback of timestamp or snapshot, says what that means: either an
	// attack (refused, rightly), or the trusted version itself was pushed
	// up (fast-forwarded) with the role's key, and the repository's real,
	// lower versions are refused until root rotates that key.
	SuspectedFastForward string `json:"suspectedFastForward,omitempty"`
}

// FastForwardJump is the version jump of timestamp, snapshot or targets
// in one refresh that Changes flags as a suspected fast-forward (a
// timestamp re-signed every 5 minutes moves about 105 000 versions a
// year).
const FastForwardJump = 100_000

// ExpiryWarning is how close to its expiry a role is reported.
const ExpiryWarning = 7 * 24 * time.Hour

// Status reports the verified state: the top-level roles and the
// delegated roles loaded so far (all of them after LoadAll) with
// versions, expiries, keys, the last refresh and its error, refused roles,
// and warnings for roles expiring within ExpiryWarning.
func (c *Client) Status(ctx context.Context) *Status {
	s := &Status{Source: c.o.Source, CacheDir: c.o.CacheDir}
	c.smu.Lock()
	s.LastRefresh = c.lastRefresh
	lastErr := c.lastErr
	if lastErr != nil {
		s.LastError = lastErr.Error()
	}
	c.smu.Unlock()
	st := c.state.Load()
	var te *Error
	if st != nil && errors.As(lastErr, &te) && errors.Is(lastErr, ErrRollback) && (te.Role == "timestamp" || te.Role == "snapshot") {
		v := st.timestamp.Signed.Version
		if te.Role == "snapshot" {
			v = st.snapshot.Signed.Version
		}
		s.SuspectedFastForward = fmt.Sprintf("the repository serves %s below the trusted v%d: a rollback (refused), or v%d was a fast-forward signed with the %s key; if the repository really is at the lower version, its %s key was compromised and must be rotated in root, after which clients accept the lower version", te.Role, v, v, te.Role, te.Role)
	}
	if st == nil {
		s.Warnings = append(s.Warnings, "no verified metadata: refresh has not succeeded")
		return s
	}
	s.Trusted = true
	top := func(role string, v int64, exp time.Time) {
		r := st.root.Signed.Roles[role]
		s.Roles = append(s.Roles, RoleStatus{Role: role, Version: v, Expires: exp, Parent: "root", Threshold: r.Threshold, KeyIDs: r.KeyIDs})
	}
	top("root", st.root.Signed.Version, st.root.Signed.Expires)
	top("timestamp", st.timestamp.Signed.Version, st.timestamp.Signed.Expires)
	top("snapshot", st.snapshot.Signed.Version, st.snapshot.Signed.Expires)
	roles := st.rolesCopy()
	t := roles["targets"].md
	top("targets", t.Signed.Version, t.Signed.Expires)
	s.Roles[len(s.Roles)-1].Targets = len(t.Signed.Targets)
	st.lmu.Lock()
	s.AllLoaded = st.all
	st.lmu.Unlock()
	for name := range st.snapshot.Signed.Meta {
		if !topLevelRoles[strings.TrimSuffix(name, ".json")] {
			s.Delegated++
		}
	}
	var names []string
	for name := range roles {
		if !topLevelRoles[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		lr := roles[name]
		rs := RoleStatus{Role: name, Version: lr.md.Signed.Version, Expires: lr.md.Signed.Expires, Parent: lr.parent, Targets: len(lr.md.Signed.Targets)}
		for _, dr := range roles[lr.parent].md.Signed.Delegations.Roles {
			if dr.Name == name {
				rs.Threshold, rs.KeyIDs, rs.Paths, rs.Terminating = dr.Threshold, dr.KeyIDs, append(dr.Paths, dr.PathHashPrefixes...), dr.Terminating
			}
		}
		s.Roles = append(s.Roles, rs)
		s.Loaded++
	}
	now := c.o.Now()
	for _, r := range s.Roles {
		switch left := r.Expires.Sub(now); {
		case left <= 0:
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s v%d expired at %s", r.Role, r.Version, r.Expires.UTC().Format(time.RFC3339)))
		case left < ExpiryWarning:
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s v%d expires in %s (%s)", r.Role, r.Version, left.Round(time.Minute), r.Expires.UTC().Format(time.RFC3339)))
		}
	}
	if s.SuspectedFastForward != "" {
		s.Warnings = append(s.Warnings, "suspected fast-forward: "+s.SuspectedFastForward)
	}
	s.Refused = refusedReasons(st)
	for role, why := range s.Refused {
		s.Warnings = append(s.Warnings, "refused "+role+": "+why)
	}
	sort.Strings(s.Warnings)
	return s
}

package repo

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// delegation is what the current metadata says about a role: who delegates
// it, with which keys and threshold, for which paths.
type delegation struct {
	parent    string // "root" for the top-level targets role
	keys      map[string]*metadata.Key
	keyIDs    []string
	threshold int
	paths     []string // nil for the top-level targets role: every path
}

// parentOf returns the role that delegates name, or "".
func (s *state) parentOf(name string) string {
	for _, p := range sortedRoles(s) {
		if d := s.roles[p].Signed.Delegations; d != nil {
			for _, dr := range d.Roles {
				if dr.Name == name {
					return p
				}
			}
		}
	}
	return ""
}

func sortedRoles(s *state) []string {
	out := make([]string, 0, len(s.roles))
	for k := range s.roles {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// delegationOf returns the current delegation of role, or nil.
func (s *state) delegationOf(role string) *delegation {
	if role == RoleTargets {
		rr := s.root.Signed.Roles[RoleTargets]
		return &delegation{parent: RoleRoot, keys: s.root.Signed.Keys, keyIDs: rr.KeyIDs, threshold: rr.Threshold}
	}
	p := s.parentOf(role)
	if p == "" {
		return nil
	}
	d := s.roles[p].Signed.Delegations
	for _, dr := range d.Roles {
		if dr.Name == role {
			return &delegation{parent: p, keys: d.Keys, keyIDs: dr.KeyIDs, threshold: dr.Threshold, paths: dr.Paths}
		}
	}
	return nil
}

// isAncestor reports whether a delegates, directly or not, to b (or is b).
func (s *state) isAncestor(a, b string) bool {
	x := b
	for range len(s.roles) + 2 {
		if x == a {
			return true
		}
		if x == "" || x == RoleTargets {
			return false
		}
		x = s.parentOf(x)
	}
	return false
}

// verifySignatures checks md's signatures against role's current delegation:
// every signature by a listed key, and at least the threshold valid.
func verifySignatures[T metadata.Roles](role string, version int64, md *metadata.Metadata[T], keyIDs []string, threshold int, delegator func() error) error {
	var signers []string
	for _, sig := range md.Signatures {
		if !contains(keyIDs, sig.KeyID) {
			return &Error{Kind: ErrWrongKey, Role: role, Version: version, Key: sig.KeyID}
		}
		signers = append(signers, short(sig.KeyID))
	}
	if err := safe(delegator); err != nil {
		return &Error{Kind: ErrThreshold, Role: role, Version: version, Detail: fmt.Sprintf("threshold %d of keys %v; signed by %v: %v", threshold, shortAll(keyIDs), signers, err)}
	}
	return nil
}

func safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-tuf panicked: %v", r)
		}
	}()
	return f()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func shortAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}

// checkExpiry refuses an expiry in the past or beyond now + max.
func checkExpiry(role string, version int64, exp, now time.Time, max time.Duration) error {
	if !exp.After(now) {
		return &Error{Kind: ErrExpired, Role: role, Version: version, Detail: "expires " + exp.UTC().Format(time.RFC3339)}
	}
	if exp.After(now.Add(max)) {
		return &Error{Kind: ErrExpiryTooFar, Role: role, Version: version, Detail: fmt.Sprintf("expires %s, bound %s", exp.UTC().Format(time.RFC3339), now.Add(max).UTC().Format(time.RFC3339))}
	}
	return nil
}

// checkTargetsContent applies stepseal's rules to a targets-type role's
// content: its targets inside its delegation, each with sha256 and length;
// its delegations valid, non-overlapping, one parent each, acyclic.
func checkTargetsContent(s *state, role string, md *metadata.Metadata[metadata.TargetsType], d *delegation) error {
	v := md.Signed.Version
	for path, tf := range md.Signed.Targets {
		if err := CheckTargetPath(path); err != nil {
			e := err.(*Error)
			e.Role, e.Version = role, v
			return e
		}
		if tf == nil || tf.Length <= 0 || len(tf.Hashes["sha256"]) != 32 {
			return &Error{Kind: ErrMalformed, Role: role, Version: v, Path: path, Detail: "a target needs a length > 0 and a sha256"}
		}
		if d.paths != nil && !matchesAny(d.paths, path) {
			return &Error{Kind: ErrOutsidePaths, Role: role, Version: v, Path: path, Detail: fmt.Sprintf("delegated paths %q", d.paths)}
		}
	}
	return checkDelegations(s, role, md, d)
}

func matchesAny(patterns []string, path string) bool {
	for _, p := range patterns {
		if pathMatches(p, path) {
			return true
		}
	}
	return false
}

func checkDelegations(s *state, parent string, md *metadata.Metadata[metadata.TargetsType], pd *delegation) error {
	dl := md.Signed.Delegations
	if dl == nil {
		return nil
	}
	v := md.Signed.Version
	if dl.SuccinctRoles != nil {
		return &Error{Kind: ErrUnsupported, Role: parent, Version: v, Detail: "succinct roles"}
	}
	for id, k := range dl.Keys {
		if k == nil {
			return &Error{Kind: ErrMalformed, Role: parent, Version: v, Key: id}
		}
		got, err := k.ID()
		if err != nil || got != id {
			return &Error{Kind: ErrDelegation, Role: parent, Version: v, Key: id, Detail: "key ID does not match its key"}
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			return &Error{Kind: ErrDelegation, Role: parent, Version: v, Key: id, Detail: err.Error()}
		}
		if _, err := TUFKey(pub); err != nil {
			e := err.(*Error)
			e.Role, e.Version, e.Key = parent, v, id
			return e
		}
	}
	seen := map[string]bool{}
	for i, dr := range dl.Roles {
		if err := CheckRoleName(dr.Name); err != nil {
			e := err.(*Error)
			e.Detail += " (delegated by " + parent + ")"
			return e
		}
		if seen[dr.Name] {
			return &Error{Kind: ErrDiamond, Role: dr.Name, Conflict: "role " + parent, Detail: "delegated twice by " + parent}
		}
		seen[dr.Name] = true
		if s.isAncestor(dr.Name, parent) {
			return &Error{Kind: ErrCycle, Role: dr.Name, Conflict: "role " + parent, Detail: fmt.Sprintf("%s would delegate to its own ancestor %s", parent, dr.Name)}
		}
		if other := s.parentOf(dr.Name); other != "" && other != parent {
			return &Error{Kind: ErrDiamond, Role: dr.Name, Conflict: "role " + other, Detail: fmt.Sprintf("already delegated by %s, now also by %s", other, parent)}
		}
		if len(dr.PathHashPrefixes) > 0 {
			return &Error{Kind: ErrUnsupported, Role: dr.Name, Detail: "path_hash_prefixes"}
		}
		if len(dr.Paths) == 0 {
			return &Error{Kind: ErrPattern, Role: dr.Name, Detail: "no paths"}
		}
		if dr.Threshold < 1 || dr.Threshold > len(dr.KeyIDs) {
			return &Error{Kind: ErrDelegation, Role: dr.Name, Detail: fmt.Sprintf("threshold %d for %d keys", dr.Threshold, len(dr.KeyIDs))}
		}
		ids := map[string]bool{}
		for _, id := range dr.KeyIDs {
			if ids[id] {
				return &Error{Kind: ErrDelegation, Role: dr.Name, Key: id, Detail: "key listed twice"}
			}
			ids[id] = true
			if dl.Keys[id] == nil {
				return &Error{Kind: ErrDelegation, Role: dr.Name, Key: id, Detail: "key not in the delegator's keys"}
			}
		}
		for _, p := range dr.Paths {
			if err := CheckPattern(p); err != nil {
				e := err.(*Error)
				e.Role = dr.Name
				return e
			}
			if pd.paths != nil && !coveredByAny(pd.paths, p) {
				return &Error{Kind: ErrOutsidePaths, Role: dr.Name, Path: p, Conflict: fmt.Sprintf("%s's paths %q", parent, pd.paths)}
			}
			for _, sib := range dl.Roles[:i] {
				for _, q := range sib.Paths {
					if patternsOverlap(p, q) {
						return &Error{Kind: ErrOverlap, Role: dr.Name, Path: p, Conflict: fmt.Sprintf("role %s pattern %q", sib.Name, q)}
					}
				}
			}
		}
	}
	return nil
}

func coveredByAny(parents []string, child string) bool {
	for _, p := range parents {
		if patternCovers(p, child) {
			return true
		}
	}
	return false
}

// unverifiable lists the roles whose current metadata does not meet their
// current delegation.
func unverifiable(s *state) []string {
	var out []string
	for _, role := range sortedRoles(s) {
		md := s.roles[role]
		var err error
		if role == RoleTargets {
			err = safe(func() error { return s.root.VerifyDelegate(role, md) })
		} else if p := s.parentOf(role); p == "" {
			continue // no longer delegated: a tombstone, never consulted
		} else {
			err = safe(func() error { return s.roles[p].VerifyDelegate(role, md) })
		}
		if err != nil {
			out = append(out, role)
		}
	}
	return out
}

// Accept is the publisher's gate, the only writer of snapshot and
// timestamp. It takes one or more proposals (signed role metadata, from
// Delegate, Release, RotateKey, RevokeKey, RotateRoot; co-signed copies of one
// proposal are merged first) and accepts all of them or none. Each must
// parse strictly (size cap, no null, spec_version 1.x, whole-second UTC
// expiry), be signed only by keys of its role's current delegation and by its
// threshold (proposals are checked root first, then by delegation depth, so a
// delegate's proposal may use the keys its delegator's brings in the same
// call), bump the version,
// keep every target inside the role's delegated paths with sha256 and length,
// expire within bounds, and keep stepseal's delegation rules. Then snapshot
// and timestamp are re-signed with the online key and everything is written
// (roots, roles, snapshot, timestamp). A refusal writes nothing.
func (r *Repo) Accept(ctx context.Context, proposals ...[]byte) (*Change, error) {
	type prop struct {
		h header
		b []byte
	}
	var props []prop
	idx := map[string]int{}
	for _, b := range proposals {
		h, err := parseStrict(b, true)
		if err != nil {
			return nil, err
		}
		k := fmt.Sprintf("%s/%d", h.Role, h.Version)
		if i, ok := idx[k]; ok {
			m, err := MergeProposals(props[i].b, b)
			if err != nil {
				return nil, err
			}
			props[i].b = m
			continue
		}
		idx[k] = len(props)
		props = append(props, prop{h, b})
	}
	// Root first, then by depth in the current delegation tree (roles not
	// yet delegated last, in the order given): a delegator's proposal is
	// checked before its delegate's, which may need the keys it brings.
	rank := func(h header) int {
		if h.Role == RoleRoot {
			return 0
		}
		x := h.Role
		for d := 1; d <= len(r.st.roles)+1; d++ {
			if x == RoleTargets {
				return d
			}
			if x = r.st.parentOf(x); x == "" {
				break
			}
		}
		return len(r.st.roles) + 2
	}
	sort.SliceStable(props, func(i, j int) bool { return rank(props[i].h) < rank(props[j].h) })
	st := r.st.clone()
	rootChanged := false
	var changed []string
	for _, p := range props {
		if p.h.Type == RoleRoot {
			if err := r.acceptRoot(st, p.b); err != nil {
				return nil, err
			}
			rootChanged = true
			continue
		}
		if p.h.Type != RoleTargets {
			return nil, &Error{Kind: ErrUnsupported, Role: p.h.Role, Version: p.h.Version, Detail: "snapshot and timestamp are signed by the publisher, not proposed"}
		}
		if err := r.acceptTargets(st, p.h, p.b); err != nil {
			return nil, err
		}
		if !contains(changed, p.h.Role) {
			changed = append(changed, p.h.Role)
		}
	}
	return r.commit(ctx, st, rootChanged, changed)
}

func (r *Repo) acceptTargets(st *state, h header, b []byte) error {
	role, v := h.Role, h.Version
	if role != RoleTargets {
		if err := CheckRoleName(role); err != nil {
			return err
		}
	}
	md, err := decode[metadata.TargetsType](b, role)
	if err != nil {
		return err
	}
	d := st.delegationOf(role)
	if d == nil {
		return &Error{Kind: ErrNotDelegated, Role: role, Version: v}
	}
	delegator := func() error {
		if d.parent == RoleRoot {
			return st.root.VerifyDelegate(role, md)
		}
		return st.roles[d.parent].VerifyDelegate(role, md)
	}
	if err := verifySignatures(role, v, md, d.keyIDs, d.threshold, delegator); err != nil {
		return err
	}
	if cur := st.roles[role]; cur != nil && v <= cur.Signed.Version {
		return &Error{Kind: ErrVersion, Role: role, Version: v, Detail: fmt.Sprintf("current version is %d", cur.Signed.Version)}
	}
	if err := checkExpiry(role, v, md.Signed.Expires, r.now(), r.cfg.bounds().Targets); err != nil {
		return err
	}
	if err := checkTargetsContent(st, role, md, d); err != nil {
		return err
	}
	// Re-serialize: the published bytes are what go-tuf parsed (no duplicate
	// keys or odd spacing surviving), still covered by the same signatures.
	out, err := md.ToBytes(true)
	if err != nil {
		return &Error{Kind: ErrMalformed, Role: role, Version: v, Detail: err.Error()}
	}
	st.roles[role], st.raws[role] = md, out
	return nil
}

func (r *Repo) acceptRoot(st *state, b []byte) error {
	md, err := decode[metadata.RootType](b, RoleRoot)
	if err != nil {
		return err
	}
	v, cur := md.Signed.Version, st.root.Signed.Version
	if v != cur+1 {
		return &Error{Kind: ErrVersion, Role: RoleRoot, Version: v, Detail: fmt.Sprintf("want exactly %d", cur+1)}
	}
	old, nw := st.root.Signed.Roles[RoleRoot], md.Signed.Roles[RoleRoot]
	if nw == nil {
		return &Error{Kind: ErrMalformed, Role: RoleRoot, Version: v, Detail: "no root role"}
	}
	all := append(append([]string{}, old.KeyIDs...), nw.KeyIDs...)
	for _, sig := range md.Signatures {
		if !contains(all, sig.KeyID) {
			return &Error{Kind: ErrWrongKey, Role: RoleRoot, Version: v, Key: sig.KeyID}
		}
	}
	if err := safe(func() error { return st.root.VerifyDelegate(RoleRoot, md) }); err != nil {
		return &Error{Kind: ErrThreshold, Role: RoleRoot, Version: v, Detail: fmt.Sprintf("the current root's threshold %d: %v", old.Threshold, err)}
	}
	if err := safe(func() error { return md.VerifyDelegate(RoleRoot, md) }); err != nil {
		return &Error{Kind: ErrThreshold, Role: RoleRoot, Version: v, Detail: fmt.Sprintf("the new root's threshold %d: %v", nw.Threshold, err)}
	}
	if !md.Signed.ConsistentSnapshot {
		return &Error{Kind: ErrUnsupported, Role: RoleRoot, Version: v, Detail: "consistent_snapshot must be true"}
	}
	for _, name := range []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp} {
		rr := md.Signed.Roles[name]
		if rr == nil || rr.Threshold < 1 || rr.Threshold > len(rr.KeyIDs) {
			return &Error{Kind: ErrDelegation, Role: name, Version: v, Detail: "top-level role missing or threshold outside [1, keys]"}
		}
		for _, id := range rr.KeyIDs {
			if md.Signed.Keys[id] == nil {
				return &Error{Kind: ErrDelegation, Role: name, Version: v, Key: id, Detail: "key not in root's keys"}
			}
		}
	}
	if err := checkExpiry(RoleRoot, v, md.Signed.Expires, r.now(), r.cfg.bounds().Root); err != nil {
		return err
	}
	out, err := md.ToBytes(true)
	if err != nil {
		return &Error{Kind: ErrMalformed, Role: RoleRoot, Version: v, Detail: err.Error()}
	}
	st.root, st.rootRaw = md, out
	return nil
}

// canonicalSigned is the canonical JSON the signatures cover.
func canonicalSigned(b []byte) ([]byte, header, error) {
	h, err := parseStrict(b, true)
	if err != nil {
		return nil, h, err
	}
	var signed any
	switch h.Type {
	case RoleTargets:
		md, err := decode[metadata.TargetsType](b, h.Role)
		if err != nil {
			return nil, h, err
		}
		signed = md.Signed
	case RoleRoot:
		md, err := decode[metadata.RootType](b, h.Role)
		if err != nil {
			return nil, h, err
		}
		signed = md.Signed
	default:
		return nil, h, &Error{Kind: ErrUnsupported, Role: h.Role, Detail: "only targets and root are proposed"}
	}
	c, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, h, &Error{Kind: ErrMalformed, Role: h.Role, Detail: err.Error()}
	}
	return c, h, nil
}

// MergeProposals joins the signatures of two copies of one proposal (each
// co-signer signs their own copy). The signed content must be identical.
func MergeProposals(a, b []byte) ([]byte, error) {
	ca, ha, err := canonicalSigned(a)
	if err != nil {
		return nil, err
	}
	cb, hb, err := canonicalSigned(b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ca, cb) {
		return nil, &Error{Kind: ErrProposal, Role: ha.Role, Version: ha.Version, Conflict: fmt.Sprintf("role %s v%d with other content", hb.Role, hb.Version)}
	}
	switch ha.Type {
	case RoleRoot:
		return mergeSigs[metadata.RootType](a, b, ha.Role)
	default:
		return mergeSigs[metadata.TargetsType](a, b, ha.Role)
	}
}

func mergeSigs[T metadata.Roles](a, b []byte, role string) ([]byte, error) {
	ma, err := decode[T](a, role)
	if err != nil {
		return nil, err
	}
	mb, err := decode[T](b, role)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, s := range ma.Signatures {
		have[s.KeyID] = true
	}
	for _, s := range mb.Signatures {
		if !have[s.KeyID] {
			ma.Signatures = append(ma.Signatures, s)
			have[s.KeyID] = true
		}
	}
	return ma.ToBytes(true)
}

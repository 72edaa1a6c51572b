package trust

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Floor is state a consumer without a disk of its own (a Task's pod, a
// webhook replica) takes from a party that keeps a cache (the controller
// writes it to a ConfigMap it owns, see controllers/trustwatch): the
// newest root it trusts, and the lowest version of each role it will
// accept. With it, such a consumer is protected against rollback to
// anything older than what the controller last verified, not only to
// what is older than the root it was shipped with.
type Floor struct {
	// Root is the newest trusted root.json; it bootstraps a client whose
	// cache has no root (in place of an older BootstrapRoot).
	Root json.RawMessage `json:"root,omitempty"`
	// Versions are the lowest acceptable versions: "root", "timestamp",
	// "snapshot", "targets" and delegated roles (checked against the
	// snapshot's meta).
	Versions map[string]int64 `json:"versions"`
}

// ParseFloor decodes a Floor strictly.
func ParseFloor(data []byte) (*Floor, error) {
	var f Floor
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, &Error{Category: ErrMalformed, Detail: "trust floor", Err: err}
	}
	if len(f.Root) > 0 {
		if err := CheckMetadata("root", f.Root, maxRootSize); err != nil {
			return nil, err
		}
	}
	for role, v := range f.Versions {
		if v < 0 {
			return nil, &Error{Category: ErrMalformed, Role: role, Detail: "trust floor: negative version"}
		}
	}
	return &f, nil
}

// FloorOf is the floor of the client's verified state: its root and the
// versions of the top-level roles and of every delegated role the
// snapshot names.
func (c *Client) FloorOf() *Floor {
	st := c.state.Load()
	if st == nil {
		return nil
	}
	f := &Floor{Versions: topVersions(st)}
	for name, m := range st.snapshot.Signed.Meta {
		role := strings.TrimSuffix(name, ".json")
		if !topLevelRoles[role] && m != nil {
			f.Versions[role] = m.Version
		}
	}
	// The trusted root's own bytes: the cache's root.json (written only
	// once verified), when it is this version.
	if raw, err := os.ReadFile(filepath.Join(c.o.CacheDir, "root.json")); err == nil && rootVersion(raw) == st.root.Signed.Version {
		f.Root = raw
	}
	return f
}

// topVersions are the versions of st's top-level roles.
func topVersions(st *state) map[string]int64 {
	return map[string]int64{
		"root": st.root.Signed.Version, "timestamp": st.timestamp.Signed.Version,
		"snapshot": st.snapshot.Signed.Version, "targets": st.role("targets").md.Signed.Version,
	}
}

// rootVersion reads a guarded root.json's version (0 if unreadable).
func rootVersion(data []byte) int64 {
	var r struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if json.Unmarshal(data, &r) != nil {
		return 0
	}
	return r.Signed.Version
}

// checkFloor refuses a verified state older than the floor.
func checkFloor(f *Floor, st *state) error {
	if f == nil {
		return nil
	}
	have := topVersions(st)
	var roles []string
	for r := range f.Versions {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, role := range roles {
		want := f.Versions[role]
		v, ok := have[role]
		if !ok {
			m := st.snapshot.Signed.Meta[role+".json"]
			if m == nil {
				return &Error{Category: ErrRollback, Role: role, Detail: fmt.Sprintf("snapshot v%d no longer names it, but the trust floor has v%d", st.snapshot.Signed.Version, want)}
			}
			v = m.Version
		}
		if v < want {
			return &Error{Category: ErrRollback, Role: role, Version: v, Detail: fmt.Sprintf("older than v%d, the trust floor (the newest version the controller verified)", want)}
		}
	}
	return nil
}

package trust

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TargetChange is a target path a role added, removed or changed (its
// sha256 or length) between the versions of a refresh.
type TargetChange struct {
	Role   string `json:"role"`
	Path   string `json:"path"`
	Change string `json:"change"` // "added", "removed" or "changed"
	// FromSHA256/FromLength: before (removed, changed); To…: after
	// (added, changed).
	FromSHA256 string `json:"fromSha256,omitempty"`
	FromLength int64  `json:"fromLength,omitempty"`
	ToSHA256   string `json:"toSha256,omitempty"`
	ToLength   int64  `json:"toLength,omitempty"`
}

// previousTargets keeps, at a refresh, the target lists of the versions
// the refresh replaced, for TargetChanges: the top-level targets as
// before, and each delegated role whose snapshot version moved as this
// process held it, else as the cache held it (a file this client verified
// when it wrote it; here only compared, never trusted). It reads only the
// changed roles' cache files, before any of them is loaded anew.
func previousTargets(before *state, ch *Changes, cacheDir string) map[string]*metadata.Metadata[metadata.TargetsType] {
	old := map[string]*metadata.Metadata[metadata.TargetsType]{}
	roles := before.rolesCopy()
	if t := roles["targets"]; t != nil && t.md != nil && ch.Targets.From != ch.Targets.To {
		old["targets"] = t.md
	}
	for _, rc := range ch.Roles {
		if rc.From == 0 {
			continue
		}
		if lr := roles[rc.Role]; lr != nil && lr.md != nil && lr.md.Signed.Version == rc.From {
			old[rc.Role] = lr.md
			continue
		}
		data, err := os.ReadFile(filepath.Join(cacheDir, rc.Role+".json"))
		if err != nil || checkMetadata(rc.Role, data, DefaultMaxRoleSize) != nil {
			continue
		}
		var md *metadata.Metadata[metadata.TargetsType]
		if safely(rc.Role, func() (err error) { md, err = (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(data); return err }) == nil && md.Signed.Version == rc.From {
			old[rc.Role] = md
		}
	}
	return old
}

// TargetChanges fills ch.TargetChanges: per role whose version a refresh
// moved (ch is that refresh's Changes, and the client's state still the
// one it produced), the target paths added, removed or changed — for the
// top-level targets always, for a delegated role when it is loaded in
// the current state (LoadAll loads them all: `trust status --all`) and
// its previous version is known (this process held it, or the cache
// did). The others are named in ch.TargetsNotCompared with the reason.
func (c *Client) TargetChanges(ch *Changes) {
	st := c.state.Load()
	if st == nil || ch == nil {
		return
	}
	ch.TargetChanges, ch.TargetsNotCompared = nil, nil
	roles := st.rolesCopy()
	type rv struct {
		role     string
		from, to int64
	}
	var todo []rv
	if ch.Targets.From != ch.Targets.To {
		todo = append(todo, rv{"targets", ch.Targets.From, ch.Targets.To})
	}
	for _, r := range ch.Roles {
		todo = append(todo, rv{r.Role, r.From, r.To})
	}
	notCompared := func(role, why string) {
		if ch.TargetsNotCompared == nil {
			ch.TargetsNotCompared = map[string]string{}
		}
		ch.TargetsNotCompared[role] = why
	}
	for _, r := range todo {
		now := roles[r.role]
		if now == nil || now.md == nil {
			notCompared(r.role, "not loaded (lookups load the roles on their way; --all loads every role)")
			continue
		}
		if now.md.Signed.Version != r.to {
			notCompared(r.role, fmt.Sprintf("v%d is loaded, not v%d", now.md.Signed.Version, r.to))
			continue
		}
		var was map[string]*metadata.TargetFiles
		if r.from != 0 {
			o := ch.previous[r.role]
			if o == nil {
				notCompared(r.role, fmt.Sprintf("v%d is not known here (neither this process nor the cache held it)", r.from))
				continue
			}
			was = o.Signed.Targets
		}
		ch.TargetChanges = append(ch.TargetChanges, diffTargets(r.role, was, now.md.Signed.Targets)...)
	}
	sort.Slice(ch.TargetChanges, func(i, j int) bool {
		a, b := ch.TargetChanges[i], ch.TargetChanges[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		return a.Path < b.Path
	})
}

func diffTargets(role string, was, is map[string]*metadata.TargetFiles) []TargetChange {
	sum := func(t *metadata.TargetFiles) string {
		if t == nil {
			return ""
		}
		return hex.EncodeToString(t.Hashes["sha256"])
	}
	var out []TargetChange
	for p, t := range is {
		o, ok := was[p]
		switch {
		case !ok:
			out = append(out, TargetChange{Role: role, Path: p, Change: "added", ToSHA256: sum(t), ToLength: t.Length})
		case sum(o) != sum(t) || o.Length != t.Length:
			out = append(out, TargetChange{Role: role, Path: p, Change: "changed", FromSHA256: sum(o), FromLength: o.Length, ToSHA256: sum(t), ToLength: t.Length})
		}
	}
	for p, o := range was {
		if _, ok := is[p]; !ok {
			out = append(out, TargetChange{Role: role, Path: p, Change: "removed", FromSHA256: sum(o), FromLength: o.Length})
		}
	}
	return out
}

// previousChains are, for each delegated role whose version ch says moved
// and which the previous state had loaded, the delegation chain it was
// reached by (targets first).
func previousChains(before *state, ch *Changes) map[string][]string {
	roles := before.rolesCopy()
	out := map[string][]string{}
	for _, rc := range ch.Roles {
		chain := []string{rc.Role}
		for r := roles[rc.Role]; r != nil && r.parent != "" && r.parent != "root" && len(chain) <= 64; r = roles[r.parent] {
			chain = append([]string{r.parent}, chain...)
			if r.parent == "targets" {
				out[rc.Role] = chain
				break
			}
		}
	}
	return out
}

// LoadChanged loads, in the current state, the delegated roles whose
// version ch (the last refresh's Changes) says moved and that the
// previous state had loaded, along the chain they were reached by then,
// as long as each delegator still delegates the next role — so that
// TargetChanges can compare them without LoadAll. For a long-running
// process (the controller); a role it cannot reach that way stays not
// compared. Only a timeout or an unreachable repository is returned.
func (c *Client) LoadChanged(ctx context.Context, ch *Changes) error {
	st := c.state.Load()
	if st == nil || ch == nil {
		return nil
	}
	for _, rc := range ch.Roles {
		chain := ch.chains[rc.Role]
		for i := 1; i < len(chain); i++ {
			p := st.role(chain[i-1])
			if p == nil || p.md == nil || !delegatesTo(p.md, chain[i]) {
				break
			}
			if _, err := c.step(ctx, st, chain[i-1], chain[i], chain[:i]); err != nil {
				if ctx.Err() != nil || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) {
					return err
				}
				break
			}
		}
	}
	return nil
}

func delegatesTo(md *metadata.Metadata[metadata.TargetsType], role string) bool {
	if md.Signed.Delegations == nil {
		return false
	}
	for _, dr := range md.Signed.Delegations.Roles {
		if dr.Name == role {
			return true
		}
	}
	return false
}

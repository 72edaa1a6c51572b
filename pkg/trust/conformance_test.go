package trust

// Cases of the TUF conformance suite (theupdateframework/tuf-conformance)
// that matter to stepseal, ported to the loopback repository of
// sim_test.go: root rotation sequences, top-level key rotations, expired
// roots during and at the end of a rotation, fast-forward recovery of
// snapshot and targets, and version and hash mismatches of the top-level
// files. Each refusal asserts the typed error, the role it names and that
// the cache is unchanged (stepseal commits a refresh all or nothing, so a
// refused refresh keeps even the root versions before the bad one out of
// the cache: the suite accepts either).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// setRoleKeys makes keys, with threshold, the keys of role in s's next
// root (key entries no role uses any more are removed by go-tuf).
func setRoleKeys(t *testing.T, s *sim, role string, keys []*testKey, threshold int) {
	t.Helper()
	for _, id := range append([]string(nil), s.root.Signed.Roles[role].KeyIDs...) {
		if err := s.root.Signed.RevokeKey(id, role); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		if err := s.root.Signed.AddKey(k.key, role); err != nil {
			t.Fatal(err)
		}
	}
	s.root.Signed.Roles[role].Threshold = threshold
}

// publishRootSignedBy serves the current root signed by exactly signers.
func publishRootSignedBy(t *testing.T, s *sim, signers []*testKey) {
	t.Helper()
	s.set(fmt.Sprintf("%d.root.json", s.root.Signed.Version), sign(t, s.root, signers))
}

// cachedVersion is the version of role's file in the cache directory.
func cachedVersion(t *testing.T, dir, role string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, role+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		t.Fatal(err)
	}
	return md.Signed.Version
}

// refusedFor is refreshFails that also checks the role the error names.
func refusedFor(t *testing.T, c *Client, dir string, cat error, role string) {
	t.Helper()
	before := cachedVersion(t, dir, "root")
	refreshFails(t, c, dir, cat)
	_, err := c.Refresh(ctx)
	var te *Error
	if !errors.As(err, &te) || te.Role != role {
		t.Fatalf("error names role %q, want %q: %v", te.Role, role, err)
	}
	if got := cachedVersion(t, dir, "root"); got != before {
		t.Fatalf("cached root v%d, want v%d", got, before)
	}
}

func pick(pool []*testKey, idx []int) []*testKey {
	var ks []*testKey
	for _, i := range idx {
		ks = append(ks, pool[i])
	}
	return ks
}

// TestConformanceRootRotations ports the suite's root rotation table: each
// root version names its keys (indices into a pool) and threshold and is
// signed by some keys; the client refreshes after each version is
// published. A version must be signed by a threshold of the previous
// root's keys and of its own; the first that is not is refused as
// ErrUnsigned naming root, and the cache keeps the last trusted root.
func TestConformanceRootRotations(t *testing.T) {
	type step struct {
		keys      []int
		threshold int
		sigs      []int
		ok        bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"1-of-1 key rotation", []step{
			{[]int{0}, 1, []int{0}, true}, {[]int{1}, 1, []int{0, 1}, true}, {[]int{2}, 1, []int{1, 2}, true}}},
		{"1-of-1 key rotation, unused signatures", []step{
			{[]int{0}, 1, []int{0}, true}, {[]int{1}, 1, []int{3, 0, 1, 2}, true}, {[]int{2}, 1, []int{1, 2, 0}, true}}},
		{"1-of-1 key rotation fail: not signed with the old key (signed by the new key only)", []step{
			{[]int{0}, 1, []int{0}, true}, {[]int{1}, 1, []int{1}, false}}},
		{"1-of-1 key rotation fail: not signed with the new key", []step{
			{[]int{0}, 1, []int{0}, true}, {[]int{1}, 1, []int{0}, false}}},
		{"3-of-5, sign with different key combinations", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 2, 4}, true},
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 4, 1}, true},
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 3}, true},
			{[]int{0, 1, 2, 3, 4}, 3, []int{2, 3, 4}, true}}},
		{"3-of-5, one key rotated, signed by the keys in both", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{0, 1, 2, 3, 5}, 3, []int{0, 1, 2}, true}}},
		{"3-of-5, one key rotated, old and new keys sign", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{0, 1, 2, 3, 5}, 3, []int{4, 5, 0, 1}, true}}},
		{"3-of-5, two keys rotated fail: only 2 new keys sign", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{0, 1, 5, 6, 3}, 3, []int{0, 1, 4}, false}}},
		{"3-of-5, two keys rotated fail: only 1 old key signs", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{0, 1, 5, 6, 3}, 3, []int{0, 5, 6}, false}}},
		{"3-of-5, all keys rotated: intermediate root signed only by the new keys fails", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{5, 6, 7, 8, 9}, 3, []int{5, 6, 7, 8, 9}, false}}},
		{"3-of-5, all keys rotated over two versions with partial overlap", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{2, 3, 4, 5, 6}, 3, []int{0, 1, 2, 5, 6}, true},
			{[]int{5, 6, 7, 8, 9}, 3, []int{2, 5, 6, 7}, true},
			{[]int{5, 6, 7, 8, 9}, 3, []int{7, 8, 9}, true}}},
		{"3-of-5, second rotation signed by the first root's keys only fails", []step{
			{[]int{0, 1, 2, 3, 4}, 3, []int{0, 1, 2}, true},
			{[]int{2, 3, 4, 5, 6}, 3, []int{0, 1, 2, 5, 6}, true},
			{[]int{5, 6, 7, 8, 9}, 3, []int{0, 1, 7, 8, 9}, false}}},
		{"1-of-3 threshold increase to 2-of-3", []step{
			{[]int{0, 1, 2}, 1, []int{0}, true}, {[]int{0, 1, 2}, 2, []int{0, 1}, true}}},
		{"1-of-3 threshold increase to 2-of-3 fail: one signature", []step{
			{[]int{0, 1, 2}, 1, []int{0}, true}, {[]int{0, 1, 2}, 2, []int{1}, false}}},
		{"2-of-3 threshold decrease to 1-of-3", []step{
			{[]int{0, 1, 2}, 2, []int{0, 1}, true}, {[]int{0, 1, 2}, 1, []int{0, 1}, true}, {[]int{0, 1, 2}, 1, []int{2}, true}}},
		{"2-of-3 threshold decrease to 1-of-3 fail: one signature", []step{
			{[]int{0, 1, 2}, 2, []int{0, 1}, true}, {[]int{0, 1, 2}, 1, []int{2}, false}}},
		{"1-of-2 threshold increase to 2-of-2", []step{
			{[]int{0, 1}, 1, []int{0}, true}, {[]int{0, 1}, 2, []int{0, 1}, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			var pool []*testKey
			for i := 0; i < 10; i++ {
				pool = append(pool, newKey(t))
			}
			first := tc.steps[0]
			setRoleKeys(t, s, "root", pick(pool, first.keys), first.threshold)
			publishRootSignedBy(t, s, pick(pool, first.sigs))
			dir := t.TempDir()
			c := s.clientFor(t, dir)
			mustRefresh(t, c)
			for _, st := range tc.steps[1:] {
				s.root.Signed.Version++
				setRoleKeys(t, s, "root", pick(pool, st.keys), st.threshold)
				publishRootSignedBy(t, s, pick(pool, st.sigs))
				if !st.ok {
					refusedFor(t, c, dir, ErrUnsigned, "root")
					return
				}
				mustRefresh(t, c)
				if got := cachedVersion(t, dir, "root"); got != s.root.Signed.Version {
					t.Fatalf("cached root v%d, want v%d", got, s.root.Signed.Version)
				}
			}
		})
	}
}

// TestConformanceTopLevelKeyRotations ports the suite's key rotations of
// timestamp, snapshot and targets: root v2 gives the role new keys (key 0
// is the role's key in root v1), then the role is published signed by
// some keys. Without a threshold of the new keys it is refused as
// ErrUnsigned naming the role, and the cache keeps root v1.
func TestConformanceTopLevelKeyRotations(t *testing.T) {
	cases := []struct {
		name      string
		keys      []int
		threshold int
		sigs      []int
		ok        bool
	}{
		{"1-of-1 key rotation", []int{1}, 1, []int{1}, true},
		{"1-of-1 key rotation, old key signs too", []int{1}, 1, []int{0, 1}, true},
		{"1-of-1 key rotation fail: signed by the old key", []int{1}, 1, []int{0}, false},
		{"1-of-1 key rotation fail: no signature", []int{1}, 1, nil, false},
		{"1-of-1 threshold 1, one key signs twice fails", []int{1}, 1, []int{1, 1}, false},
		{"2-of-3", []int{1, 2, 3}, 2, []int{3, 1}, true},
		{"2-of-3 fail: one new key and the old key", []int{1, 2, 3}, 2, []int{0, 2}, false},
		{"3-of-5 with the old key kept", []int{0, 1, 2, 3, 4}, 3, []int{0, 2, 4}, true},
		{"3-of-5 with the old key kept fail: two sign", []int{0, 1, 2, 3, 4}, 3, []int{0, 4}, false},
		{"threshold increase 1-of-2 to 2-of-2 fail: one signs", []int{0, 1}, 2, []int{0}, false},
	}
	for _, role := range []string{"timestamp", "snapshot", "targets"} {
		for _, tc := range cases {
			t.Run(role+"/"+tc.name, func(t *testing.T) {
				s := newSim(t)
				pool := []*testKey{s.signers[role][0]}
				for i := 1; i < 5; i++ {
					pool = append(pool, newKey(t))
				}
				dir := t.TempDir()
				c := s.clientFor(t, dir)
				mustRefresh(t, c)
				s.rotateRoot()
				setRoleKeys(t, s, role, pick(pool, tc.keys), tc.threshold)
				s.publishRoot()
				s.signers[role] = pick(pool, tc.sigs)
				switch role {
				case "timestamp":
					s.publishTimestamp()
				case "snapshot":
					s.publishSnapshot()
				case "targets":
					s.bump("targets")
					s.publish()
				}
				if !tc.ok {
					refusedFor(t, c, dir, ErrUnsigned, role)
					return
				}
				mustRefresh(t, c)
				if got := cachedVersion(t, dir, "root"); got != 2 {
					t.Fatalf("cached root v%d, want v2", got)
				}
			})
		}
	}
}

// TestConformanceExpiredRoots: intermediate roots that have expired are
// walked through (only the final root's expiry counts); a final root that
// has expired is refused as ErrFreeze, even with its keys rotated
// correctly, and the cache keeps the old root; a trusted root that has
// expired is updated from when the repository has a newer one.
func TestConformanceExpiredRoots(t *testing.T) {
	past := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	t.Run("expired intermediate roots during a rotation", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		old := s.signers["root"]
		for v := 0; v < 2; v++ {
			// Each intermediate root rotates the root key and has expired.
			s.rotateRoot()
			k := newKey(t)
			setRoleKeys(t, s, "root", []*testKey{k}, 1)
			s.root.Signed.Expires = past
			publishRootSignedBy(t, s, append(old, k))
			old = []*testKey{k}
		}
		s.rotateRoot()
		s.root.Signed.Expires = s.expires
		publishRootSignedBy(t, s, old)
		s.signers["root"] = old
		ch := mustRefresh(t, c)
		if got := cachedVersion(t, dir, "root"); got != 4 || len(ch.Roots) != 3 {
			t.Fatalf("cached root v%d, changes %+v", got, ch)
		}
	})
	t.Run("expired final root", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		s.rotateRoot()
		s.root.Signed.Expires = past
		s.publishRoot()
		refusedFor(t, c, dir, ErrFreeze, "root")
	})
	t.Run("expired final root after valid intermediate roots and a key rotation", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		s.rotateRoot()
		s.publishRoot()
		s.rotateRoot()
		k := newKey(t)
		setRoleKeys(t, s, "root", []*testKey{k}, 1)
		s.root.Signed.Expires = past
		publishRootSignedBy(t, s, append(s.signers["root"], k))
		refusedFor(t, c, dir, ErrFreeze, "root")
	})
	t.Run("expired trusted root, newer root available", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		mustRefresh(t, s.clientFor(t, dir))
		later := time.Now().Add(400 * 24 * time.Hour)
		far := s.expires.Add(2 * 365 * 24 * time.Hour)
		s.rotateRoot()
		s.root.Signed.Expires = far
		s.publishRoot()
		s.timestamp.Signed.Expires, s.snapshot.Signed.Expires, s.targets["targets"].Signed.Expires = far, far, far
		s.bump("targets")
		s.publish()
		c := s.clientFor(t, dir, func(o *ClientOptions) { o.Now = func() time.Time { return later } })
		mustRefresh(t, c)
		if got := cachedVersion(t, dir, "root"); got != 2 {
			t.Fatalf("cached root v%d, want v2", got)
		}
	})
	t.Run("expired cached timestamp and snapshot are replaced", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		soon := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		s.timestamp.Signed.Expires, s.snapshot.Signed.Expires = soon, soon
		s.publishSnapshot()
		mustRefresh(t, s.clientFor(t, dir))
		s.timestamp.Signed.Expires, s.snapshot.Signed.Expires = s.expires, s.expires
		s.publishSnapshot()
		c := s.clientFor(t, dir, func(o *ClientOptions) { o.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } })
		mustRefresh(t, c)
		if got := cachedVersion(t, dir, "snapshot"); got != s.snapshot.Signed.Version {
			t.Fatalf("cached snapshot v%d, want v%d", got, s.snapshot.Signed.Version)
		}
	})
}

// TestConformanceFastForwardRecovery ports the suite's snapshot and
// targets fast-forward recovery (timestamp's is TestFastForwardRecovery):
// a compromised key pushes the version very high; the repository recovers
// by rotating the snapshot and timestamp keys in a new root, after which
// the lower version is accepted; before the rotation it is a rollback.
func TestConformanceFastForwardRecovery(t *testing.T) {
	for _, role := range []string{"snapshot", "targets"} {
		t.Run(role, func(t *testing.T) {
			s := newSim(t)
			dir := t.TempDir()
			c := s.clientFor(t, dir)
			mustRefresh(t, c)
			setVersion := func(v int64) {
				if role == "snapshot" {
					// Not yet published at v: publishSnapshot keeps v.
					s.snapshot.Signed.Version = v
					s.publishSnapshot()
				} else {
					s.targets["targets"].Signed.Version = v
					s.publish()
				}
			}
			setVersion(99999)
			mustRefresh(t, c)
			if got := cachedVersion(t, dir, role); got != 99999 {
				t.Fatalf("cached %s v%d", role, got)
			}
			setVersion(5)
			refusedFor(t, c, dir, ErrRollback, role)
			s.rotateRoot()
			for _, r := range []string{"snapshot", "timestamp"} {
				k := newKey(t)
				setRoleKeys(t, s, r, []*testKey{k}, 1)
				s.signers[r] = []*testKey{k}
			}
			s.publishRoot()
			setVersion(6)
			mustRefresh(t, c)
			if got := cachedVersion(t, dir, role); got != 6 {
				t.Fatalf("cached %s v%d, want v6", role, got)
			}
		})
	}
}

// TestConformanceTopLevelMismatches: the snapshot or top-level targets
// served is not the version, or not the bytes, that the timestamp or
// snapshot names: ErrMixAndMatch naming the role, cache unchanged.
func TestConformanceTopLevelMismatches(t *testing.T) {
	for _, tc := range []struct {
		name, role string
		edit       func(s *sim)
	}{
		// go-tuf's message names no role for some of these: the client
		// names the role of the file it handed go-tuf last.
		{"snapshot version other than the timestamp's", "snapshot", func(s *sim) {
			v := s.snapshot.Signed.Version
			s.set(fmt.Sprintf("%d.snapshot.json", v+1), s.get(fmt.Sprintf("%d.snapshot.json", v)))
			s.timestamp.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: v + 1}
			s.publishTimestamp()
		}},
		{"snapshot bytes other than the timestamp's hash", "snapshot", func(s *sim) {
			s.publishSnapshot()
			name := fmt.Sprintf("%d.snapshot.json", s.snapshot.Signed.Version)
			s.set(name, flipSig(s.get(name)))
		}},
		{"targets version other than the snapshot's", "targets", func(s *sim) {
			v := s.targets["targets"].Signed.Version
			s.set(fmt.Sprintf("%d.targets.json", v+1), s.get(fmt.Sprintf("%d.targets.json", v)))
			s.snapshot.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: v + 1}
			s.publishSnapshot()
		}},
		{"targets bytes other than the snapshot's hash", "targets", func(s *sim) {
			s.bump("targets")
			s.publish()
			name := fmt.Sprintf("%d.targets.json", s.targets["targets"].Signed.Version)
			s.set(name, flipSig(s.get(name)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			dir := t.TempDir()
			c := s.clientFor(t, dir)
			mustRefresh(t, c)
			tc.edit(s)
			refusedFor(t, c, dir, ErrMixAndMatch, tc.role)
		})
	}
	// Longer than the length the timestamp or snapshot names: ErrTooLarge
	// before a byte more is read.
	for _, role := range []string{"snapshot", "targets"} {
		t.Run(role+" longer than its meta length", func(t *testing.T) {
			s := newSim(t)
			dir := t.TempDir()
			c := s.clientFor(t, dir)
			mustRefresh(t, c)
			s.bump("targets")
			s.publish()
			name := fmt.Sprintf("%d.%s.json", s.snapshot.Signed.Version, role)
			if role == "targets" {
				name = fmt.Sprintf("%d.targets.json", s.targets["targets"].Signed.Version)
			}
			s.set(name, append(s.get(name), ' '))
			refusedFor(t, c, dir, ErrTooLarge, role)
		})
	}
}

// flipSig changes one hex digit of the first signature: same length,
// other bytes.
func flipSig(data []byte) []byte {
	out := append([]byte(nil), data...)
	i := bytes.Index(out, []byte(`"sig":"`))
	if i < 0 {
		i = bytes.Index(out, []byte(`"sig": "`)) + 1
	}
	j := i + len(`"sig":"`)
	if out[j] == '0' {
		out[j] = '1'
	} else {
		out[j] = '0'
	}
	return out
}

// TestConformanceMisc ports smaller cases of the suite: a timestamp of
// the trusted version with other content is ignored (the trusted one
// stays); a snapshot naming a lower top-level targets version is a
// rollback; unknown fields in every top-level role are accepted (the
// signature covers them); a snapshot without targets.json is malformed.
func TestConformanceMisc(t *testing.T) {
	t.Run("timestamp of the trusted version, other content", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		before := cacheState(t, dir)["timestamp.json"]
		s.timestamp.Signed.Expires = s.timestamp.Signed.Expires.Add(time.Hour)
		s.set("timestamp.json", sign(t, s.timestamp, s.signers["timestamp"]))
		mustRefresh(t, c)
		if cacheState(t, dir)["timestamp.json"] != before {
			t.Fatal("the cached timestamp was replaced by one of the same version")
		}
	})
	t.Run("top-level targets version rollback in a new snapshot", func(t *testing.T) {
		s := newSim(t)
		s.bump("targets")
		s.publish()
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		s.snapshot.Signed.Meta["targets.json"] = metaOf(1, s.get("1.targets.json"))
		s.publishSnapshot()
		refusedFor(t, c, dir, ErrRollback, "targets")
	})
	t.Run("unknown fields accepted", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		custom := map[string]any{"x-vendor": map[string]any{"a": []any{1.0, "b"}}}
		s.rotateRoot()
		s.root.Signed.UnrecognizedFields = custom
		s.publishRoot()
		s.timestamp.Signed.UnrecognizedFields = custom
		s.snapshot.Signed.UnrecognizedFields = custom
		s.targets["targets"].Signed.UnrecognizedFields = custom
		s.bump("targets")
		s.publish()
		mustRefresh(t, c)
		if got := cachedVersion(t, dir, "root"); got != 2 {
			t.Fatalf("cached root v%d, want v2", got)
		}
	})
	t.Run("snapshot without targets.json", func(t *testing.T) {
		s := newSim(t)
		dir := t.TempDir()
		c := s.clientFor(t, dir)
		mustRefresh(t, c)
		delete(s.snapshot.Signed.Meta, "targets.json")
		s.publishSnapshot()
		refusedFor(t, c, dir, ErrMalformed, "snapshot")
	})
}

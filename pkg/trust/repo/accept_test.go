package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/signing"
)

// craft builds role's next version, lets edit change it, and signs it.
func craft(t testing.TB, f *fixture, role string, edit func(*metadata.Metadata[metadata.TargetsType]), signers ...signing.Signer) []byte {
	t.Helper()
	md, err := f.repo.next(role)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(md)
	}
	if err := signAll(context.Background(), md, signers); err != nil {
		t.Fatal(err)
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawEdit rewrites a proposal's JSON (signatures then no longer matter:
// strict parsing refuses first).
func rawEdit(t testing.TB, b []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func signed(m map[string]any) map[string]any { return m["signed"].(map[string]any) }

func TestAcceptRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	attacker := newKey(t, signing.ED25519)
	tf := func(path string) *metadata.TargetFiles {
		return &metadata.TargetFiles{Length: 8, Hashes: metadata.Hashes{"sha256": bytes.Repeat([]byte{1}, 32)}}
	}
	valid := craft(t, f, "payments", nil, f.dev)
	current, _ := f.repo.current("payments")
	currentBytes, _ := current.ToBytes(true)
	cases := []struct {
		name     string
		proposal []byte
		kind     error
		role     string
		key      string
		path     string
	}{
		{"wrong key", craft(t, f, "payments", nil, attacker), ErrWrongKey, "payments", mustID(t, attacker), ""},
		{"below threshold (unsigned)", craft(t, f, "payments", nil), ErrThreshold, "payments", "", ""},
		{"bad signature bytes", rawEdit(t, valid, func(m map[string]any) {
			sig := m["signatures"].([]any)[0].(map[string]any)
			sig["sig"] = strings.Repeat("00", 64)
		}), ErrThreshold, "payments", "", ""},
		{"content changed after signing", rawEdit(t, valid, func(m map[string]any) {
			signed(m)["expires"] = time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
		}), ErrThreshold, "payments", "", ""},
		{"version not bumped", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) { md.Signed.Version-- }, f.dev), ErrVersion, "payments", "", ""},
		{"current version replayed", currentBytes, ErrVersion, "payments", "", ""},
		{"target outside paths", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Targets["oci/registry.example.com/billing/api:v1"] = tf("")
		}, f.dev), ErrOutsidePaths, "payments", "", "oci/registry.example.com/billing/api:v1"},
		{"target deeper than pattern", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Targets["oci/registry.example.com/payments/v1/api:v1"] = tf("")
		}, f.dev), ErrOutsidePaths, "payments", "", "oci/registry.example.com/payments/v1/api:v1"},
		{"target without length", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Targets[payAPI].Length = 0
		}, f.dev), ErrMalformed, "payments", "", payAPI},
		{"target without sha256", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Targets[payAPI].Hashes = metadata.Hashes{"sha512": bytes.Repeat([]byte{1}, 64)}
		}, f.dev), ErrMalformed, "payments", "", payAPI},
		{"expired", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Expires = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
		}, f.dev), ErrExpired, "payments", "", ""},
		{"expiry too far", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Expires = time.Now().Add(10 * 365 * day).UTC().Truncate(time.Second)
		}, f.dev), ErrExpiryTooFar, "payments", "", ""},
		{"role not delegated", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.UnrecognizedFields[RoleField] = "ghost"
		}, f.dev), ErrNotDelegated, "ghost", "", ""},
		{"bad role name", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.UnrecognizedFields[RoleField] = "../payments"
		}, f.dev), ErrRoleName, "../payments", "", ""},
		{"no role field", rawEdit(t, valid, func(m map[string]any) { delete(signed(m), RoleField) }), ErrMalformed, "", "", ""},
		{"null target (go-tuf panics on it)", rawEdit(t, valid, func(m map[string]any) { signed(m)["targets"].(map[string]any)["x"] = nil }), ErrMalformed, "", "", ""},
		{"null delegations", rawEdit(t, valid, func(m map[string]any) { signed(m)["delegations"] = nil }), ErrMalformed, "", "", ""},
		{"spec_version 2", rawEdit(t, valid, func(m map[string]any) { signed(m)["spec_version"] = "2.0.0" }), ErrUnsupported, "", "", ""},
		{"spec_version garbage", rawEdit(t, valid, func(m map[string]any) { signed(m)["spec_version"] = "garbage" }), ErrUnsupported, "", "", ""},
		{"expiry with nanoseconds", craft(t, f, "payments", func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Expires = md.Signed.Expires.Add(time.Millisecond)
		}, f.dev), ErrMalformed, "", "", ""},
		{"expiry with an offset", rawEdit(t, valid, func(m map[string]any) { signed(m)["expires"] = "2030-01-01T00:00:00+02:00" }), ErrMalformed, "", "", ""},
		{"fractional version", rawEdit(t, valid, func(m map[string]any) { signed(m)["version"] = 2.5 }), ErrMalformed, "", "", ""},
		{"extra top-level field", rawEdit(t, valid, func(m map[string]any) { m["x"] = 1 }), ErrMalformed, "", "", ""},
		{"snapshot proposed", rawEdit(t, valid, func(m map[string]any) { signed(m)["_type"] = "snapshot"; delete(signed(m), RoleField) }), ErrUnsupported, "snapshot", "", ""},
		{"not JSON", []byte("{\"signed\": "), ErrMalformed, "", "", ""},
		{"oversized", append(valid, bytes.Repeat([]byte(" "), MaxMetadataSize)...), ErrTooLarge, "", "", ""},
		{"delegates an overlapping sibling", craft(t, f, RoleTargets, func(md *metadata.Metadata[metadata.TargetsType]) {
			d := md.Signed.Delegations
			id := mustID(t, attacker)
			k, _ := TUFKey(attacker.Public())
			d.Keys[id] = k
			d.Roles = append(d.Roles, metadata.DelegatedRole{Name: "ci", KeyIDs: []string{id}, Threshold: 1, Terminating: true, Paths: []string{"oci/*/payments/api:v1"}})
		}, f.targets), ErrOverlap, "ci", "", "oci/*/payments/api:v1"},
		{"delegation key ID forged", craft(t, f, RoleTargets, func(md *metadata.Metadata[metadata.TargetsType]) {
			d := md.Signed.Delegations
			k, _ := TUFKey(attacker.Public())
			d.Keys[mustID(t, f.dev)] = k
		}, f.targets), ErrDelegation, RoleTargets, mustID(t, f.dev), ""},
		{"threshold 0", craft(t, f, RoleTargets, func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Delegations.Roles[0].Threshold = 0
		}, f.targets), ErrDelegation, "payments", "", ""},
		{"hash-prefix delegation", craft(t, f, RoleTargets, func(md *metadata.Metadata[metadata.TargetsType]) {
			md.Signed.Delegations.Roles[0].Paths = nil
			md.Signed.Delegations.Roles[0].PathHashPrefixes = []string{"ab"}
		}, f.targets), ErrUnsupported, "payments", "", ""},
		{"top-level targets signed by a team key", craft(t, f, RoleTargets, nil, f.dev), ErrWrongKey, RoleTargets, mustID(t, f.dev), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tree(t, f.dir)
			r, err := Open(f.dir, OpenOptions{Online: f.online})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Accept(ctx, c.proposal)
			wantRefusal(t, err, c.kind)
			var e *Error
			errors.As(err, &e)
			if e.Role != c.role || (c.key != "" && e.Key != c.key) || (c.path != "" && e.Path != c.path) {
				t.Fatalf("error names role %q key %q path %q, want %q %q %q: %v", e.Role, e.Key, e.Path, c.role, c.key, c.path, err)
			}
			sameTree(t, before, tree(t, f.dir))
		})
	}
	// All or nothing: a valid proposal with a refused one writes nothing.
	before := tree(t, f.dir)
	if _, err := f.repo.Accept(ctx, valid, cases[0].proposal); err == nil {
		t.Fatal("accepted a batch with a refused proposal")
	}
	sameTree(t, before, tree(t, f.dir))
	// The valid one alone goes through.
	f.accept(t, valid)
}

func TestAcceptNeedsTheOnlineKey(t *testing.T) {
	f := newFixture(t)
	p := craft(t, f, "payments", nil, f.dev)
	before := tree(t, f.dir)
	r, err := Open(f.dir, OpenOptions{Online: f.dev})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Accept(context.Background(), p)
	wantRefusal(t, err, ErrOnlineKey)
	sameTree(t, before, tree(t, f.dir))
}

func TestPublishRefusesRewritingAVersion(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dst := t.TempDir()
	if _, err := f.repo.Publish(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if n, err := f.repo.Publish(ctx, dst); err != nil || len(n) != 0 {
		t.Fatalf("second publish wrote %v, %v", n, err)
	}
	g := newFixture(t)
	before := tree(t, dst)
	_, err := g.repo.Publish(ctx, dst)
	wantRefusal(t, err, ErrPublished)
	sameTree(t, before, tree(t, dst))
}

func TestCheckListenAddr(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true, "0.0.0.0:80": false, ":80": false, "10.0.0.1:80": false} {
		if err := CheckListenAddr(addr, false); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if err := CheckListenAddr(":80", true); err != nil {
		t.Error(err)
	}
}

func TestPatterns(t *testing.T) {
	for _, c := range []struct {
		a, b    string
		overlap bool
	}{
		{"oci/r/payments/*", "oci/r/billing/*", false},
		{"oci/r/payments/*", "oci/r/*/api", true},
		{"oci/r/payments/*", "oci/r/payments/*/x", false},
		{"layouts/payments.layout", "layouts/*", true},
		{"layouts/payments.layout", "layouts/billing.layout", false},
	} {
		if got := patternsOverlap(c.a, c.b); got != c.overlap {
			t.Errorf("%s vs %s: %v", c.a, c.b, got)
		}
	}
}

func mustID(t testing.TB, s signing.Signer) string {
	t.Helper()
	id, err := KeyID(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func FuzzAccept(f *testing.F) {
	fx := newFixture(f)
	valid := craft(f, fx, "payments", nil, fx.dev)
	f.Add(valid)
	f.Add([]byte(`{"signed":{"_type":"targets","spec_version":"1.0.31","version":9,"expires":"2030-01-01T00:00:00Z","targets":{"a":null},"x-stepseal-role":"payments"},"signatures":[]}`))
	f.Add([]byte(`{"signed":{"_type":"root","spec_version":"1.0","version":2},"signatures":[{"keyid":"a","sig":"00"}]}`))
	f.Add([]byte(`{"signed":{"_type":"targets","spec_version":"1.0","version":3,"x-stepseal-role":"payments","delegations":{"keys":{"k":{}},"roles":[{"name":"x"}]}},"signatures":[]}`))
	// One Repo for every input: a refusal changes neither it nor the disk.
	r := fx.repo
	before := tree(f, fx.dir)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := r.Accept(context.Background(), b); err == nil {
			before = tree(t, fx.dir) // the valid seed, or a re-spacing of it
			return
		}
		sameTree(t, before, tree(t, fx.dir))
	})
}

func addDelegation(t testing.TB, name string, key signing.Signer, paths ...string) func(*metadata.Metadata[metadata.TargetsType]) {
	return func(md *metadata.Metadata[metadata.TargetsType]) {
		k, err := TUFKey(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		id := mustID(t, key)
		if md.Signed.Delegations == nil {
			md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
		}
		md.Signed.Delegations.Keys[id] = k
		md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, metadata.DelegatedRole{Name: name, KeyIDs: []string{id}, Threshold: 1, Terminating: true, Paths: paths})
	}
}

// TestAcceptDelegationRefusals: the delegation rules hold at the gate too,
// for proposals built without Delegate.
func TestAcceptDelegationRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	web := newKey(t, signing.ED25519)
	f.accept(t, craft(t, f, "payments", addDelegation(t, "payments-web", web, payPattern), f.dev))
	f.accept(t, craft(t, f, RoleTargets, addDelegation(t, "billing", web, "oci/registry.example.com/billing/*"), f.targets))
	cases := []struct {
		name     string
		proposal []byte
		kind     error
		role     string
		conflict string
	}{
		{"diamond", craft(t, f, "billing", addDelegation(t, "payments-web", web, "oci/registry.example.com/billing/*"), web), ErrDiamond, "payments-web", "role payments"},
		{"diamond on a top-level delegation", craft(t, f, "billing", addDelegation(t, "payments", web, "oci/registry.example.com/billing/*"), web), ErrDiamond, "payments", "role targets"},
		{"cycle", craft(t, f, "payments-web", addDelegation(t, "payments", web, payPattern), web), ErrCycle, "payments", "role payments-web"},
		{"self delegation", craft(t, f, "billing", addDelegation(t, "billing", web, "oci/registry.example.com/billing/*"), web), ErrCycle, "billing", "role billing"},
		{"delegating the top-level targets", craft(t, f, "billing", addDelegation(t, "targets", web, "oci/registry.example.com/billing/*"), web), ErrRoleName, "targets", ""},
		{"sub-delegation outside the parent's paths", craft(t, f, "billing", addDelegation(t, "billing-x", web, payPattern), web), ErrOutsidePaths, "billing-x", "billing's paths"},
		{"overlapping siblings in one proposal", craft(t, f, "billing", func(md *metadata.Metadata[metadata.TargetsType]) {
			addDelegation(t, "billing-a", web, "oci/registry.example.com/billing/*")(md)
			addDelegation(t, "billing-b", web, "oci/registry.example.com/billing/api:v1")(md)
		}, web), ErrOverlap, "billing-b", `role billing-a pattern "oci/registry.example.com/billing/*"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tree(t, f.dir)
			_, err := f.repo.Accept(ctx, c.proposal)
			wantRefusal(t, err, c.kind)
			var e *Error
			errors.As(err, &e)
			if e.Role != c.role || !strings.Contains(e.Conflict, c.conflict) {
				t.Fatalf("error names role %q conflict %q, want %q %q: %v", e.Role, e.Conflict, c.role, c.conflict, err)
			}
			sameTree(t, before, tree(t, f.dir))
		})
	}
}

// TestAcceptRefusesAStaleRepo: two publishers opened the repository; the
// second to write is refused (ErrStale) instead of signing the same
// snapshot version without the first's change.
func TestAcceptRefusesAStaleRepo(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r1, err := Open(f.dir, OpenOptions{Online: f.online})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(f.dir, OpenOptions{Online: f.online})
	if err != nil {
		t.Fatal(err)
	}
	p := craft(t, f, "payments", nil, f.dev)
	if _, err := r1.Accept(ctx, p); err != nil {
		t.Fatal(err)
	}
	before := tree(t, f.dir)
	_, err = r2.Tick(ctx)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("got %v, want ErrStale", err)
	}
	sameTree(t, before, tree(t, f.dir))
}

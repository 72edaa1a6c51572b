package trust

import (
	"strings"
	"testing"
)

// TestTargetChanges: what a release changed, per role and path. A
// long-running client (the role held in memory) and a new process on the
// same cache (the role's previous version read from the cache) both say
// that payments added one path, changed another's digest and removed a
// third, and that the top-level targets added its own; a role not loaded
// is named as not compared, never guessed.
func TestTargetChanges(t *testing.T) {
	s, _ := paymentsRepo(t)
	old := s.addTarget("payments", "images/payments/web", []byte("web v1"))
	s.addTarget("payments", "images/payments/batch", []byte("batch v1"))
	s.bump("payments")
	s.publish()
	dir := t.TempDir()
	long := s.clientFor(t, dir)
	mustRefresh(t, long)
	if err := long.LoadAll(ctx); err != nil {
		t.Fatal(err)
	}

	s.bump("payments")
	added := s.addTarget("payments", "images/payments/cron", []byte("cron v1"))
	changed := s.addTarget("payments", "images/payments/web", []byte("web v2"))
	delete(s.targets["payments"].Signed.Targets, "images/payments/batch")
	s.bump("targets")
	top := s.addTarget("targets", "layouts/all.layout", []byte("{}"))
	s.publish()

	// A new process on the same cache, before the long-running one loads
	// the new version (which rewrites the cached role file).
	fresh := s.clientFor(t, dir)
	chFresh := mustRefresh(t, fresh)
	if err := fresh.LoadAll(ctx); err != nil {
		t.Fatal(err)
	}
	fresh.TargetChanges(chFresh)

	ch := mustRefresh(t, long)
	long.TargetChanges(ch)
	if ch.TargetsNotCompared["payments"] == "" || len(ch.TargetChanges) != 1 || ch.TargetChanges[0].Path != "layouts/all.layout" || ch.TargetChanges[0].ToSHA256 != top {
		t.Fatalf("before payments v4 is loaded: %+v %v", ch.TargetChanges, ch.TargetsNotCompared)
	}
	// The long-running client loads just the changed role, along the
	// delegations it reached it by before.
	if err := long.LoadChanged(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if st := long.Status(ctx); st.AllLoaded || st.Loaded != 1 {
		t.Fatalf("LoadChanged loaded %d roles (all: %v)", st.Loaded, st.AllLoaded)
	}
	long.TargetChanges(ch)

	want := []TargetChange{
		{Role: "payments", Path: "images/payments/batch", Change: "removed"},
		{Role: "payments", Path: "images/payments/cron", Change: "added", ToSHA256: added, ToLength: 7},
		{Role: "payments", Path: "images/payments/web", Change: "changed", FromSHA256: old, FromLength: 6, ToSHA256: changed, ToLength: 6},
		{Role: "targets", Path: "layouts/all.layout", Change: "added", ToSHA256: top, ToLength: 2},
	}
	for name, got := range map[string]*Changes{"long-running": ch, "new process": chFresh} {
		if len(got.TargetsNotCompared) != 0 || len(got.TargetChanges) != len(want) {
			t.Fatalf("%s: %+v, not compared %v", name, got.TargetChanges, got.TargetsNotCompared)
		}
		for i, w := range want {
			g := got.TargetChanges[i]
			g.FromSHA256, g.FromLength = map[bool]string{true: g.FromSHA256}[w.FromSHA256 != ""], map[bool]int64{true: g.FromLength}[w.FromSHA256 != ""]
			if g != w {
				t.Errorf("%s: [%d] = %+v, want %+v", name, i, got.TargetChanges[i], w)
			}
		}
	}
}

// TestStatusSuspectsFastForward: after a timestamp pushed to 1e9 (with
// the timestamp key) the repository's real, lower timestamp is refused as
// a rollback, and Status says what that may mean; the jump itself was
// flagged when it was accepted.
func TestStatusSuspectsFastForward(t *testing.T) {
	s, _ := paymentsRepo(t)
	c := s.clientFor(t, t.TempDir())
	mustRefresh(t, c)
	s.timestamp.Signed.Version = 1_000_000_000
	s.set("timestamp.json", sign(t, s.timestamp, s.signers["timestamp"]))
	ch := mustRefresh(t, c)
	if !strings.Contains(ch.SuspectedFastForward, " → v1000000000 in one refresh") {
		t.Fatalf("the jump: %q", ch.SuspectedFastForward)
	}
	if st := c.Status(ctx); st.SuspectedFastForward != "" {
		t.Fatalf("before any refusal: %q", st.SuspectedFastForward)
	}
	s.timestamp.Signed.Version = 5
	s.set("timestamp.json", sign(t, s.timestamp, s.signers["timestamp"]))
	if _, err := c.Refresh(ctx); err == nil {
		t.Fatal("the lower timestamp was accepted")
	}
	st := c.Status(ctx)
	if !strings.Contains(st.SuspectedFastForward, "below the trusted v1000000000") || !strings.Contains(st.SuspectedFastForward, "rotated in root") ||
		!strings.Contains(strings.Join(st.Warnings, "\n"), "suspected fast-forward") {
		t.Fatalf("status: %+v", st)
	}
}

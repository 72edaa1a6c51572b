package repo

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
)

// TestResignOverOCI: the online roles re-signed from the published
// repository on the real registry, with no repository directory: nothing
// when the timestamp is far from expiry; timestamp v+1 for the verified
// snapshot when it is near; snapshot v+1 too when that is near, listing
// the same role files; an independent client follows each step and still
// resolves the release. Refusals write nothing: the wrong online key; a
// published timestamp that does not verify (a registry writer's forgery is
// never countersigned); a destination that moved on since the refresh.
func TestResignOverOCI(t *testing.T) {
	ctx := context.Background()
	host := testregistry.Start(t)
	reg, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	dst := trust.OCIScheme + host + "/stepseal/resign"
	if _, err := f.repo.PublishOCI(ctx, reg, dst); err != nil {
		t.Fatal(err)
	}
	newClient := func() *trust.Client {
		c, err := trust.NewClient(ctx, trust.ClientOptions{Source: dst, CacheDir: t.TempDir(), BootstrapRoot: f.repo.RootBytes(), Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	resigner, reader := newClient(), newClient()
	if _, err := reader.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ts0 := f.repo.st.timestamp.Signed.Version
	sn0 := f.repo.st.snapshot.Signed.Version

	// Far from expiry (1 day left, re-sign within 1 h): nothing.
	res, err := Resign(ctx, ResignOptions{Client: resigner, Dest: dst, Registry: reg, Online: f.online, Before: time.Hour})
	if err != nil || res.Resigned || len(res.Written) != 0 {
		t.Fatalf("resign far from expiry: %+v %v", res, err)
	}

	// Within 48 h: timestamp v+1, 2 h; the 7-day snapshot stays.
	res, err = Resign(ctx, ResignOptions{Client: resigner, Dest: dst, Registry: reg, Online: f.online, Before: 48 * time.Hour, Expiry: Expiry{Timestamp: 2 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resigned || res.Timestamp.To != ts0+1 || res.Snapshot.To != sn0 || strings.Join(res.Written, ",") != "timestamp.json" {
		t.Fatalf("timestamp re-signed: %+v", res)
	}
	if left := time.Until(res.Timestamp.Expires); left > 2*time.Hour || left < 119*time.Minute {
		t.Fatalf("new timestamp expires in %s", left)
	}
	ch, err := reader.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Timestamp.To != ts0+1 || ch.Snapshot.To != sn0 {
		t.Fatalf("reader after the timestamp re-sign: %+v", ch)
	}

	// Within 8 days: the snapshot too, with the same role files.
	res, err = Resign(ctx, ResignOptions{Client: resigner, Dest: dst, Registry: reg, Online: f.online, Before: 8 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Timestamp.To != ts0+2 || res.Snapshot.To != sn0+1 || len(res.Written) != 2 {
		t.Fatalf("snapshot re-signed: %+v", res)
	}
	if ch, err = reader.Refresh(ctx); err != nil || ch.Snapshot.To != sn0+1 || len(ch.Roles) != 0 {
		t.Fatalf("reader after the snapshot re-sign: %+v %v", ch, err)
	}
	if _, err := reader.VerifyArtifact(ctx, payAPI, f.digest, f.length); err != nil {
		t.Fatal(err)
	}

	// The wrong online key: refused, nothing written.
	other := newKey(t, signing.ED25519)
	if _, err = Resign(ctx, ResignOptions{Client: resigner, Dest: dst, Registry: reg, Online: other, Force: true}); !errors.Is(err, ErrOnlineKey) {
		t.Fatalf("resign with another key: %v", err)
	}
	if ch, err = reader.Refresh(ctx); err != nil || ch.Updated {
		t.Fatalf("after a refused resign: %+v %v", ch, err)
	}

	// The publisher's repository directory is now behind the registry:
	// publishing its next timestamp would be a rollback, refused; after
	// Follow, its next versions are above the re-signer's.
	behind := t.TempDir()
	if err := os.CopyFS(behind, os.DirFS(f.dir)); err != nil {
		t.Fatal(err)
	}
	stale, err := Open(behind, OpenOptions{Online: f.online})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stale.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := stale.PublishOCI(ctx, reg, dst); !errors.Is(err, ErrStale) && !errors.Is(err, ErrPublished) {
		t.Fatalf("publishing a repository behind the re-signer: %v", err)
	}
	if err := f.repo.Follow(ctx, dst, reg); err != nil {
		t.Fatal(err)
	}
	ch2, err := f.repo.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ch2.Timestamp != ts0+3 || ch2.Snapshot != sn0+2 {
		t.Fatalf("tick after Follow: %+v", ch2)
	}
	if _, err := f.repo.PublishOCI(ctx, reg, dst); err != nil {
		t.Fatal(err)
	}
	if ch, err = reader.Refresh(ctx); err != nil || ch.Timestamp.To != ts0+3 {
		t.Fatalf("reader after the publisher followed: %+v %v", ch, err)
	}

	// Someone with registry write access puts a forged timestamp there
	// (signed by a key root does not name): the re-signer refuses to
	// countersign anything.
	forged := f.repo.st.timestamp
	forged.ClearSignatures()
	forged.Signed.Version += 10
	if err := signAll(ctx, forged, []signing.Signer{other}); err != nil {
		t.Fatal(err)
	}
	fb, _ := forged.ToBytes(true)
	tag, _ := name.NewTag(host+"/stepseal/resign:timestamp.json", name.Insecure)
	if _, err := reg.PushBytes(ctx, tag, fb, trust.ArtifactType, trust.LayerType, "timestamp.json"); err != nil {
		t.Fatal(err)
	}
	_, err = Resign(ctx, ResignOptions{Client: resigner, Dest: dst, Registry: reg, Online: f.online, Force: true})
	if !errors.Is(err, trust.ErrUnsigned) || !errors.Is(err, reject.ErrRefused) || !strings.Contains(err.Error(), "nothing re-signed") {
		t.Fatalf("resign over a forged timestamp: %v", err)
	}
	if got, _, _ := reg.FetchBytes(ctx, tag, 1<<20); string(got) != string(fb) {
		t.Fatal("the forged timestamp was overwritten")
	}
}

// TestResignRefusesAMovedDestination: the destination is checked to hold
// the timestamp the client verified; one published since (here: a
// directory whose timestamp is older) is ErrStale and nothing is written.
func TestResignRefusesAMovedDestination(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	old := t.TempDir()
	if _, err := f.repo.Publish(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	url, _ := f.serve(t)
	c, err := trust.NewClient(ctx, trust.ClientOptions{Source: url, CacheDir: t.TempDir(), BootstrapRoot: f.repo.RootBytes()})
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, old)
	_, err = Resign(ctx, ResignOptions{Client: c, Dest: old, Online: f.online, Force: true})
	if !errors.Is(err, ErrStale) {
		t.Fatalf("resign into a destination that is not the verified state: %v", err)
	}
	sameTree(t, before, tree(t, old))
}

// TestTimestampLeftToExpire: nobody re-signs; once the timestamp's seconds
// are up, every client refuses the frozen repository with ErrFreeze naming
// the role, its version and when it expired, and the re-signer cannot
// verify it either, so it signs nothing (the publisher runs `trust accept`).
func TestTimestampLeftToExpire(t *testing.T) {
	ctx := context.Background()
	root, targets, online := newKey(t, signing.ED25519), newKey(t, signing.ED25519), newKey(t, signing.ED25519)
	dir := t.TempDir()
	r, err := Init(ctx, dir, InitOptions{RootSigners: []signing.Signer{root}, TargetsSigners: []signing.Signer{targets}, Online: online, Expiry: Expiry{Timestamp: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, repo: r, online: online}
	url, site := f.serve(t)
	c, err := trust.NewClient(ctx, trust.ClientOptions{Source: url, CacheDir: t.TempDir(), BootstrapRoot: r.RootBytes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(r.st.timestamp.Signed.Expires) + 100*time.Millisecond)
	for _, fresh := range []bool{false, true} {
		cl := c
		if fresh {
			if cl, err = trust.NewClient(ctx, trust.ClientOptions{Source: url, CacheDir: t.TempDir(), BootstrapRoot: r.RootBytes()}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = cl.Refresh(ctx)
		var te *trust.Error
		if !errors.Is(err, trust.ErrFreeze) || !errors.Is(err, reject.ErrExpired) || !errors.As(err, &te) || te.Role != "timestamp" || te.Version != 1 ||
			!strings.Contains(err.Error(), "expired at "+r.st.timestamp.Signed.Expires.UTC().Format(time.RFC3339)) {
			t.Fatalf("refresh of an expired timestamp (fresh client %v): %v", fresh, err)
		}
	}
	before := tree(t, site)
	if _, err := Resign(ctx, ResignOptions{Client: c, Dest: site, Online: online, Force: true}); !errors.Is(err, trust.ErrFreeze) {
		t.Fatalf("resign of an expired repository: %v", err)
	}
	sameTree(t, before, tree(t, site))
}

// FuzzPublishedTimestamp drives arbitrary bytes, as a published
// timestamp.json (untrusted: the registry or directory the re-signer and
// the publisher read), through what Resign and Publish do with it:
// sameTimestamp accepts only the verified timestamp's version and
// snapshot meta; notBehind never panics.
func FuzzPublishedTimestamp(f *testing.F) {
	fx := newFixture(f)
	ts := fx.repo.st.timestamp
	good, _ := ts.ToBytes(true)
	f.Add(good)
	f.Add([]byte(`{"signed":{"_type":"timestamp","spec_version":"1.0.31","version":9,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":null}},"signatures":[]}`))
	f.Add([]byte(`{"signed":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = notBehind(data, good)
		if err := sameTimestamp(data, ts); err == nil {
			h, perr := parseStrict(data, false)
			if perr != nil || h.Version != ts.Signed.Version {
				t.Fatalf("accepted a timestamp that is not the verified v%d: %q", ts.Signed.Version, data)
			}
		}
	})
}

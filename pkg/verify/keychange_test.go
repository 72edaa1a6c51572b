package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// fakeLog is a LogEvidence answering from a map of digests to indexes, or
// with err.
type fakeLog struct {
	at    map[string]uint64
	err   error
	calls []attest.LogAnchor
}

func (f *fakeLog) Logged(_ context.Context, a attest.LogAnchor, digest string) (uint64, error) {
	f.calls = append(f.calls, a)
	if f.err != nil {
		return 0, f.err
	}
	i, ok := f.at[digest]
	if !ok {
		return 0, errNotLogged
	}
	if i >= a.Size {
		return i, fmt.Errorf("%w: logged at index %d, at or after the rotation", errNotLogged, i)
	}
	return i, nil
}

var errNotLogged = reject.Sentinel(reject.ErrMissing, "not in the log before the rotation")

// testAnchor names a real note key's log; the fake evidence does not read
// its checkpoint.
var testAnchor = attest.LogAnchor{Key: "stepseal.dev/local+1ac73445+ARm4SdWBxjpShYSbJrMSIxxd8ogfQR5OyniYJX+L941P", Size: 10,
	Checkpoint: "stepseal.dev/local\n10\nq83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VnM=\n\n— stepseal.dev/local GqxzRQ\n"}

// rotated is newChain with dave (build.compile) rotated out for alice, as
// layout.RotateKey writes it: dave stays, alice joins, a key-rotated line.
func rotated(t *testing.T) *chain {
	c := newChain(t)
	line, err := attest.KeyRotatedLine(attest.KeyRotation{KeyID: keyID(t, "dave"), NewKeyID: keyID(t, "alice"), Log: testAnchor})
	if err != nil {
		t.Fatal(err)
	}
	c.layout.Readme += "\n" + line
	for i := range c.layout.Steps {
		if c.layout.Steps[i].Name == "build.compile" {
			c.layout.Steps[i].PubKeys = append(c.layout.Steps[i].PubKeys, keyID(t, "alice"))
		}
	}
	return c
}

func daveLink(t *testing.T, links Memory) (string, []byte) {
	for n, d := range links {
		if strings.HasPrefix(n, "build.compile.") {
			return n, d
		}
	}
	t.Fatal("no build.compile link")
	return "", nil
}

func TestRotatedKeyLinkNeedsLogEvidence(t *testing.T) {
	c := rotated(t)
	layout, links := c.build()
	name, data := daveLink(t, links)
	v, err := ours(t, layout, links, Options{LayoutName: "root.layout"})
	var re *RotatedKeyError
	if !errors.As(err, &re) || !errors.Is(err, ErrRotatedKey) || !errors.Is(err, reject.ErrMissing) || !errors.Is(err, reject.ErrRefused) {
		t.Fatalf("want a RotatedKeyError, got %v", err)
	}
	want := fmt.Sprintf(`step "build.compile": link %s is signed by in-toto key %s, rotated out at log size 10 of log "stepseal.dev/local" by layout root.layout: no log evidence`, name, keyID(t, "dave")[:8])
	if !strings.HasPrefix(re.Error(), want) || re.Step != "build.compile" || re.KeyID != keyID(t, "dave") || re.LogSize != 10 {
		t.Fatalf("message:\n%s\nwant prefix\n%s", re, want)
	}
	rejecttest.Is(t, "rotated key, no evidence", re, reject.ErrMissing)
	if category(re) != "rotated-key" || v.Passed {
		t.Fatal(category(re))
	}
	// The link no longer counts: the step's threshold fails too.
	if !errors.Is(err, ErrThreshold) {
		t.Fatalf("the rotated key's link still counted: %v", err)
	}

	// Logged below the rotation: it counts, with a warning saying so.
	log := &fakeLog{at: map[string]uint64{store.Digest(data): 3}}
	v, err = ours(t, layout, links, Options{Log: log})
	if err != nil {
		t.Fatalf("a link logged before the rotation was refused: %v", err)
	}
	if len(log.calls) != 1 || log.calls[0].Size != 10 || !strings.Contains(strings.Join(v.Warnings, "\n"), "index 3, before the rotation") {
		t.Fatalf("calls %v, warnings %q", log.calls, v.Warnings)
	}
	// The same layout still verifies with in-toto-golang (it has no log).
	if err := inToto(t, layout, links); err != nil {
		t.Fatalf("in-toto-golang refuses the rotated layout: %v", err)
	}
}

func TestRotatedKeyLinkLoggedAfterRotation(t *testing.T) {
	c := rotated(t)
	layout, links := c.build()
	_, data := daveLink(t, links)
	_, err := ours(t, layout, links, Options{Log: &fakeLog{at: map[string]uint64{store.Digest(data): 10}}})
	var re *RotatedKeyError
	if !errors.As(err, &re) || !strings.Contains(re.Error(), "rotated out at log size 10") || !strings.Contains(re.Error(), "index 10, at or after the rotation") || !errors.Is(re, reject.ErrMissing) {
		t.Fatalf("got %v", err)
	}
}

func TestRotatedKeyLinkNotLogged(t *testing.T) {
	c := rotated(t)
	layout, links := c.build()
	_, err := ours(t, layout, links, Options{Log: &fakeLog{}})
	if !errors.Is(err, ErrRotatedKey) || !strings.Contains(err.Error(), "not in the log before the rotation") {
		t.Fatalf("got %v", err)
	}
}

func TestRotatedKeyEvidenceMismatch(t *testing.T) {
	c := rotated(t)
	layout, links := c.build()
	bad := reject.Sentinel(reject.ErrMismatch, "inclusion proof failed")
	_, err := ours(t, layout, links, Options{Log: &fakeLog{err: fmt.Errorf("%w: entry 3", bad)}})
	var re *RotatedKeyError
	if !errors.As(err, &re) || !errors.Is(re, reject.ErrMismatch) || errors.Is(re, reject.ErrMissing) || !strings.Contains(re.Error(), "inclusion proof failed: entry 3") {
		t.Fatalf("got %v", err)
	}
	rejecttest.Is(t, "rotated key, proof fails", re, reject.ErrMismatch)
}

func TestRotatedKeyLogUnreadableGivesNoVerdict(t *testing.T) {
	c := rotated(t)
	layout, links := c.build()
	down := fmt.Errorf("%w: read tile", reject.ErrUnavailable)
	v, err := Layout(context.Background(), layout, []signing.Verifier{verifier(t, "owner")}, links, Options{WithoutArtifactUnsafe: true, Log: &fakeLog{err: down}})
	if v != nil || !errors.Is(err, ErrLogUnreadable) || !errors.Is(err, reject.ErrUnableToCheck) || errors.Is(err, reject.ErrRefused) {
		t.Fatalf("verdict %v, err %v", v, err)
	}
	rejecttest.Is(t, "log unreadable", err, reject.ErrUnavailable)
}

func TestNewKeyOfRotationNeedsNoEvidence(t *testing.T) {
	c := rotated(t)
	c.signers["build.compile"] = []string{"alice"}
	layout, links := c.build()
	log := &fakeLog{}
	if _, err := ours(t, layout, links, Options{Log: log}); err != nil || len(log.calls) != 0 {
		t.Fatalf("the new key's link: %v (log asked %d times)", err, len(log.calls))
	}
}

func TestRevokedKeyLinkRefused(t *testing.T) {
	c := newChain(t)
	line, err := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: keyID(t, "dave"), Reason: "laptop stolen"})
	if err != nil {
		t.Fatal(err)
	}
	c.layout.Readme += "\n" + line
	// As layout.RevokeKey writes it: dave leaves the steps and keys,
	// alice performs build.compile now.
	for i := range c.layout.Steps {
		if c.layout.Steps[i].Name == "build.compile" {
			c.layout.Steps[i].PubKeys = []string{keyID(t, "alice")}
		}
	}
	delete(c.layout.Keys, keyID(t, "dave"))
	layout, links := c.build()
	name, _ := daveLink(t, links)
	_, err = ours(t, layout, links, Options{LayoutName: "layouts/go-build.layout (TUF role targets v3)", Log: &fakeLog{at: map[string]uint64{}}})
	var re *RevokedKeyError
	if !errors.As(err, &re) || !errors.Is(err, ErrRevokedKey) || !errors.Is(re, reject.ErrUnauthorized) || category(re) != "revoked-key" {
		t.Fatalf("got %v", err)
	}
	rejecttest.Is(t, "revoked key", re, reject.ErrUnauthorized)
	want := fmt.Sprintf(`step "build.compile": link %s is signed by in-toto key %s, revoked by layout layouts/go-build.layout (TUF role targets v3) (reason: laptop stolen)`, name, keyID(t, "dave")[:8])
	if re.Error() != want {
		t.Fatalf("message:\n%s\nwant\n%s", re, want)
	}
	if err := inToto(t, layout, links); err == nil {
		t.Fatal("in-toto-golang accepts a revoked key's link")
	}
	// Even where the layout still lists the key (written by hand), the
	// revocation wins.
	c.layout.Keys[keyID(t, "dave")] = mustInTotoKey(t, "dave")
	for i := range c.layout.Steps {
		if c.layout.Steps[i].Name == "build.compile" {
			c.layout.Steps[i].PubKeys = []string{keyID(t, "dave")}
		}
	}
	layout, links = c.build()
	if _, err := ours(t, layout, links, Options{}); !errors.Is(err, ErrRevokedKey) {
		t.Fatalf("got %v", err)
	}
}

func mustInTotoKey(t *testing.T, name string) in_toto.Key {
	k, err := signing.InTotoKey(key(t, name).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyChangeReadmeMalformed(t *testing.T) {
	c := newChain(t)
	c.layout.Readme += "\n" + attest.ReadmeKeyRevoked + `{"keyid":"` + keyID(t, "dave") + `"}`
	layout, links := c.build()
	if _, err := ours(t, layout, links, Options{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "a revocation needs a reason") {
		t.Fatalf("got %v", err)
	}
}

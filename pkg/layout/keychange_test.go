package layout

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
)

func genKey(t *testing.T) (signing.Signer, in_toto.Key) {
	t.Helper()
	k, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	ik, err := signing.InTotoKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return s, ik
}

var testAnchor = attest.LogAnchor{Key: "stepseal.dev/local+1ac73445+ARm4SdWBxjpShYSbJrMSIxxd8ogfQR5OyniYJX+L941P", Size: 7,
	Checkpoint: "stepseal.dev/local\n7\nq83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VnM=\n\n— stepseal.dev/local GqxzRQ\n"}

// testLayout: build.compile by the builder, deploy.push by the builder or
// the orchestrator, which alone signs the deploy task's skip records.
func testLayout(t *testing.T, builder, orch in_toto.Key) in_toto.Layout {
	rules, err := attest.SkippableLines([]attest.SkipRule{{Task: "deploy", Steps: []string{"deploy.push"}, Keys: []string{orch.KeyID}, SkipOnlyKeys: []string{orch.KeyID}}})
	if err != nil {
		t.Fatal(err)
	}
	step := func(name string, keys ...string) in_toto.Step {
		return in_toto.Step{Type: "step", PubKeys: keys, Threshold: 1, SupplyChainItem: in_toto.SupplyChainItem{Name: name,
			ExpectedMaterials: [][]string{{"ALLOW", "*"}}, ExpectedProducts: [][]string{{"ALLOW", "*"}}}}
	}
	return in_toto.Layout{Type: "layout", Expires: "2099-01-01T00:00:00Z", Readme: "free text\n" + rules,
		Keys:  map[string]in_toto.Key{builder.KeyID: builder, orch.KeyID: orch},
		Steps: []in_toto.Step{step("build.compile", builder.KeyID), step("deploy.push", builder.KeyID, orch.KeyID)}, Inspect: []in_toto.Inspection{}}
}

func TestRotateKey(t *testing.T) {
	_, builder := genKey(t)
	_, orch := genKey(t)
	_, next := genKey(t)
	l := testLayout(t, builder, orch)
	out, err := RotateKey(l, builder.KeyID, next, testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out.Steps {
		if !slices.Equal(s.PubKeys[len(s.PubKeys)-1:], []string{next.KeyID}) || !slices.Contains(s.PubKeys, builder.KeyID) {
			t.Fatalf("step %s keys %v: want the old key kept and the new one added", s.Name, s.PubKeys)
		}
	}
	if _, ok := out.Keys[next.KeyID]; !ok || len(l.Keys) != 2 || len(l.Steps[0].PubKeys) != 1 {
		t.Fatal("the new key is not in the layout, or the input was changed")
	}
	d, err := attest.ParseReadme(out.Readme)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := d.Rotation(builder.KeyID)
	if !ok || r.NewKeyID != next.KeyID || r.Log != testAnchor || !strings.HasPrefix(out.Readme, "free text\n") {
		t.Fatalf("%+v\n%s", d, out.Readme)
	}
	// Rotating the orchestrator: its skip rule takes the new key too.
	_, orch2 := genKey(t)
	out2, err := RotateKey(out, orch.KeyID, orch2, testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := attest.ParseReadme(out2.Readme)
	if sk := d2.Skippable[0]; !slices.Contains(sk.Keys, orch2.KeyID) || !slices.Contains(sk.SkipOnlyKeys, orch2.KeyID) || len(d2.Rotated) != 2 {
		t.Fatalf("%+v", d2)
	}

	for name, c := range map[string]struct {
		l   in_toto.Layout
		old string
		new in_toto.Key
	}{
		"old key not in the layout": {l, strings.Repeat("c", 64), next},
		"rotated twice":             {out, builder.KeyID, orch2},
		"into a rotated-out key":    {out2, orch2.KeyID, orch},
	} {
		if _, err := RotateKey(c.l, c.old, c.new, testAnchor); !errors.Is(err, ErrLayout) {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := testAnchor
	bad.Size = 0
	if _, err := RotateKey(l, builder.KeyID, next, bad); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "tree size at the rotation is 0") {
		t.Errorf("empty log: %v", err)
	}
}

func TestRevokeKey(t *testing.T) {
	_, builder := genKey(t)
	_, orch := genKey(t)
	_, next := genKey(t)
	l := testLayout(t, builder, orch)
	if _, err := RevokeKey(l, builder.KeyID, "stolen"); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "leaves too few keys for step(s) build.compile") {
		t.Fatalf("revoking build.compile's only key: %v", err)
	}
	rot, err := RotateKey(l, builder.KeyID, next, testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	out, err := RevokeKey(rot, builder.KeyID, "stolen")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Keys[builder.KeyID]; ok {
		t.Fatal("the revoked key is still a key of the layout")
	}
	for _, s := range out.Steps {
		if slices.Contains(s.PubKeys, builder.KeyID) {
			t.Fatalf("step %s still lists the revoked key", s.Name)
		}
	}
	d, err := attest.ParseReadme(out.Readme)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := d.Revocation(builder.KeyID); !ok || r.Reason != "stolen" || len(d.Rotated) != 0 {
		t.Fatalf("%+v", d)
	}
	var desc strings.Builder
	if err := Describe(&desc, out); err != nil || !strings.Contains(desc.String(), "revoked: "+builder.KeyID[:8]+" (reason: stolen)") {
		t.Fatalf("Describe: %v\n%s", err, desc.String())
	}
	desc.Reset()
	if err := Describe(&desc, rot); err != nil || !strings.Contains(desc.String(), "rotated out: "+builder.KeyID[:8]+", for "+next.KeyID[:8]+": its links count only if log \"stepseal.dev/local\" held them below size 7") {
		t.Fatalf("Describe: %v\n%s", err, desc.String())
	}
	if _, err := RevokeKey(out, builder.KeyID, "again"); !errors.Is(err, ErrLayout) {
		t.Fatalf("revoked twice: %v", err)
	}
	// The orchestrator is the deploy task's only skip-record key.
	if _, err := RevokeKey(out, orch.KeyID, "gone"); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "skippable task deploy") {
		t.Fatalf("revoking the only skip-record key: %v", err)
	}
	if _, err := RevokeKey(out, next.KeyID, "bad\nreason"); !errors.Is(err, ErrLayout) {
		t.Fatalf("a reason of two lines: %v", err)
	}
}

func TestResignNeedsAnOwnerSignature(t *testing.T) {
	owner, _ := genKey(t)
	other, _ := genKey(t)
	_, builder := genKey(t)
	_, orch := genKey(t)
	_, next := genKey(t)
	ctx := context.Background()
	mb, err := Sign(ctx, testLayout(t, builder, orch), owner)
	if err != nil {
		t.Fatal(err)
	}
	change := func(l in_toto.Layout) (in_toto.Layout, error) { return RotateKey(l, builder.KeyID, next, testAnchor) }
	if _, err := Resign(ctx, mb, []signing.Signer{other}, change); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "no valid signature") {
		t.Fatalf("re-signed a layout the given owner never signed: %v", err)
	}
	out, err := Resign(ctx, mb, []signing.Signer{owner}, change)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := signing.InTotoKey(owner.Public())
	if err := out.VerifySignature(k); err != nil || len(out.Signatures) != 1 {
		t.Fatalf("the new layout's signature: %v", err)
	}
}

// TestRevocations: what a consumer of a summary looks its inputs' signers
// up in: a signed layout's key-revoked records. A rotation is not one (the
// rotated-out key's earlier links stay valid), and a layout that does not
// parse is ErrLayout.
func TestRevocations(t *testing.T) {
	owner, _ := genKey(t)
	_, builder := genKey(t)
	_, orch := genKey(t)
	_, next := genKey(t)
	signed := func(l in_toto.Layout) []byte {
		t.Helper()
		mb, err := Sign(context.Background(), l, owner)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(mb)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rot, err := RotateKey(testLayout(t, builder, orch), builder.KeyID, next, testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Revocations(signed(rot)); err != nil || len(got) != 0 {
		t.Errorf("rotated layout: %v %v, want no revocation", got, err)
	}
	rev, err := RevokeKey(rot, builder.KeyID, "laptop stolen")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Revocations(signed(rev))
	if err != nil || !slices.Equal(got, []attest.KeyRevocation{{KeyID: builder.KeyID, Reason: "laptop stolen"}}) {
		t.Errorf("revoked layout: %v %v", got, err)
	}
	if _, err := Revocations([]byte(`{"payloadType":"x"}`)); !errors.Is(err, ErrLayout) {
		t.Errorf("not a layout: %v", err)
	}
}

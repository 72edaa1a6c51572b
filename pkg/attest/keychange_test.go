package attest_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/attest"
)

var (
	idA = strings.Repeat("a", 64)
	idB = strings.Repeat("b", 64)
	// A real note verifier key (origin stepseal.dev/local) and a checkpoint
	// body of its log: the parser checks shapes, not signatures.
	logKey = "stepseal.dev/local+1ac73445+ARm4SdWBxjpShYSbJrMSIxxd8ogfQR5OyniYJX+L941P"
	anchor = attest.LogAnchor{Key: logKey, Size: 7, Checkpoint: "stepseal.dev/local\n7\nq83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VnM=\n\n— stepseal.dev/local GqxzRQ\n"}
)

func TestKeyChangeLinesRoundTrip(t *testing.T) {
	rot := attest.KeyRotation{KeyID: idA, NewKeyID: idB, Log: anchor}
	rev := attest.KeyRevocation{KeyID: idB, Reason: "laptop stolen"}
	l1, err := attest.KeyRotatedLine(rot)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := attest.KeyRevokedLine(rev)
	if err != nil {
		t.Fatal(err)
	}
	d, err := attest.ParseReadme("free text\n" + l1 + l2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Rotated, []attest.KeyRotation{rot}) || !reflect.DeepEqual(d.Revoked, []attest.KeyRevocation{rev}) {
		t.Fatalf("%+v", d)
	}
	if r, ok := d.Rotation(idA); !ok || r.Log.Origin() != "stepseal.dev/local" {
		t.Fatal(r, ok)
	}
	if _, ok := d.Revocation(idA); ok {
		t.Fatal("idA is not revoked")
	}
}

// A key-change line a verifier cannot read exactly is refused, never
// ignored: a rotation that silently vanished would drop the window, a
// revocation would un-revoke the key.
func TestKeyChangeLinesRefused(t *testing.T) {
	rot := func(edit func(*attest.KeyRotation)) string {
		r := attest.KeyRotation{KeyID: idA, NewKeyID: idB, Log: anchor}
		edit(&r)
		l, err := attest.KeyRotatedLine(r)
		if err == nil {
			t.Fatalf("KeyRotatedLine accepted %+v", r)
		}
		return l
	}
	rot(func(r *attest.KeyRotation) { r.KeyID = "abc" })
	rot(func(r *attest.KeyRotation) { r.NewKeyID = strings.ToUpper(idB) })
	rot(func(r *attest.KeyRotation) { r.NewKeyID = idA })
	rot(func(r *attest.KeyRotation) { r.Log.Size = 0 })
	rot(func(r *attest.KeyRotation) { r.Log.Key = "stepseal.dev/local+1ac73445" })
	rot(func(r *attest.KeyRotation) { r.Log.Checkpoint = "other.origin\n7\n" })
	if _, err := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: idA, Reason: " "}); err == nil {
		t.Fatal("a revocation without a reason")
	}
	if _, err := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: idA, Reason: "two\nlines"}); err == nil {
		t.Fatal("a reason of two lines")
	}
	good, _ := attest.KeyRotatedLine(attest.KeyRotation{KeyID: idA, NewKeyID: idB, Log: anchor})
	revA, _ := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: idA, Reason: "r"})
	for name, readme := range map[string]string{
		"unknown field":       attest.ReadmeKeyRevoked + `{"keyid":"` + idA + `","reason":"r","until":"2030"}`,
		"trailing data":       attest.ReadmeKeyRevoked + `{"keyid":"` + idA + `","reason":"r"} {}`,
		"not JSON":            attest.ReadmeKeyRotated + "aaaa",
		"rotated twice":       good + good,
		"rotated and revoked": good + revA,
		"no reason":           attest.ReadmeKeyRevoked + `{"keyid":"` + idA + `"}`,
		"misspelled":          "stepseal.dev/key-rotate: {}",
	} {
		if _, err := attest.ParseReadme(readme); !errors.Is(err, attest.ErrReadme) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseKeyChangeLines(f *testing.F) {
	l1, _ := attest.KeyRotatedLine(attest.KeyRotation{KeyID: idA, NewKeyID: idB, Log: anchor})
	l2, _ := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: idB, Reason: "laptop stolen"})
	f.Add(l1)
	f.Add(l2)
	f.Add(l1 + l2)
	f.Add(attest.ReadmeKeyRevoked + `{"keyid":"` + idA + `","reason":"\u0000"}`)
	f.Add(attest.ReadmeKeyRotated + `{"keyid":"` + idA + `","newKeyid":"` + idB + `","log":{"key":"+++","size":1,"checkpoint":"\n"}}`)
	f.Fuzz(func(t *testing.T, readme string) {
		d, err := attest.ParseReadme(readme)
		if err != nil {
			return
		}
		// What parses re-encodes to lines that parse to the same changes.
		var again strings.Builder
		seen := map[string]bool{}
		for _, r := range d.Rotated {
			l, err := attest.KeyRotatedLine(r)
			if err != nil {
				t.Fatalf("parsed rotation %+v does not encode: %v", r, err)
			}
			again.WriteString(l)
			if seen[r.KeyID] || r.Log.Size == 0 || r.KeyID == r.NewKeyID {
				t.Fatalf("accepted %+v", r)
			}
			seen[r.KeyID] = true
		}
		for _, r := range d.Revoked {
			l, err := attest.KeyRevokedLine(r)
			if err != nil {
				t.Fatalf("parsed revocation %+v does not encode: %v", r, err)
			}
			again.WriteString(l)
			if seen[r.KeyID] || strings.TrimSpace(r.Reason) == "" {
				t.Fatalf("accepted %+v", r)
			}
			seen[r.KeyID] = true
		}
		d2, err := attest.ParseReadme(again.String())
		if err != nil || !reflect.DeepEqual(d2.Rotated, d.Rotated) || !reflect.DeepEqual(d2.Revoked, d.Revoked) {
			t.Fatalf("re-encoded key changes do not parse back: %v\n%s", err, again.String())
		}
	})
}

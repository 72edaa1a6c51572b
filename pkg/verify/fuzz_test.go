package verify

// Fuzz targets for the three parsers verification trusts. Run briefly in CI:
//
//	go test -run='^$' -fuzz='^FuzzLink$' -fuzztime=10s ./pkg/verify
//	go test -run='^$' -fuzz='^FuzzLayout$' -fuzztime=10s ./pkg/verify
//	go test -run='^$' -fuzz='^FuzzEnvelope$' -fuzztime=10s ./pkg/verify
//
// Seeds are built from the attack fixtures; plain `go test` runs them.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
)

// deterministicKeys makes the test keys ed25519 keys derived from their
// names, so that fuzzing workers (separate processes) share them and seeds
// keep verifying. A no-op when the keys already exist (a plain test run,
// where seeds are built and checked in one process).
func deterministicKeys() {
	keysOnce.Do(func() {
		testKeys = map[string]signing.Signer{}
		for _, n := range []string{"owner", "owner2", "alice", "bob", "carol", "dave", "mallory"} {
			seed := sha256.Sum256([]byte("stepseal fuzz key " + n))
			s, err := signing.NewSigner(ed25519.NewKeyFromSeed(seed[:]))
			if err != nil {
				panic(err)
			}
			testKeys[n] = s
		}
	})
}

// FuzzLink feeds link files to the parser and the whole verification. If a
// link parses, its canonical bytes must equal in-toto-golang's for the same
// file; if verification passes with it in place of fetch.copy's link, its
// signed content must be the original one (no signature forgery through
// parsing).
func FuzzLink(f *testing.F) {
	deterministicKeys()
	c := newChain(f)
	layout, links := c.build()
	name := "fetch.copy." + keyID(f, "carol")[:8] + ".link"
	orig, err := parseLink(links[name])
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range links {
		f.Add(d)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, links[name])
	f.Add(compact.Bytes())
	f.Add([]byte(`{"signed":{"_type":"link","name":"\ud800x","materials":{"a":{"sha256":"00"}},"products":null,"byproducts":{"n":-0},"command":null,"environment":{"k":[1e2,"\u00e9"]}},"signatures":[]}`))
	f.Add([]byte(`{"signed":{"_type":"link","name":"fetch.copy","materials":{},"products":{},"byproducts":{"stepseal.dev/skip":{"reason":"When Expressions evaluated to false","when":[{"input":"$(params.a)","operator":"in","values":["x"],"resolvedInput":"y","resolvedValues":["x"]}]}},"command":[],"environment":{"stepseal.dev/run-id":"r"}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseLink(data)
		if err == nil {
			want, werr := inTotoLinkCanonical(data)
			if werr != nil {
				t.Fatalf("we parse what in-toto-golang rejects (%v): %q", werr, data)
			}
			if !bytes.Equal(l.Payload, want) {
				t.Fatalf("canonical bytes differ:\nours  %q\ncjson %q", l.Payload, want)
			}
		}
		m := Memory{}
		for n, d := range links {
			m[n] = d
		}
		m[name] = data
		v, verr := Layout(context.Background(), layout, []signing.Verifier{verifier(t, "owner")}, m, Options{WithoutArtifactUnsafe: true})
		if v == nil {
			t.Fatalf("no verdict: %v", verr)
		}
		if verr == nil && (l == nil || !bytes.Equal(l.Payload, orig.Payload)) {
			t.Fatalf("verification passed with changed signed content: %q", data)
		}
	})
}

// FuzzLayout feeds layout files to the parser and verification: no panic,
// and a pass only with the layout content the owner signed.
func FuzzLayout(f *testing.F) {
	deterministicKeys()
	c := newChain(f)
	layout, links := c.build()
	orig, err := parseLayout(layout, "layout")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(layout)
	c.layout.Steps[1].ExpectedProducts = [][]string{{"MATCH", "source/**", "IN", "x", "WITH", "PRODUCTS", "IN", "y", "FROM", "fetch.copy"}, {"REQUIRE", "a"}}
	c.layout.Steps[2].Threshold = 0
	more, _ := c.build()
	f.Add(more)
	// Key-change readme lines (attest.KeyRotation, attest.KeyRevocation).
	rot, _ := attest.KeyRotatedLine(attest.KeyRotation{KeyID: keyID(f, "dave"), NewKeyID: keyID(f, "alice"), Log: testAnchor})
	rev, _ := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: keyID(f, "carol"), Reason: "stolen"})
	c.layout.Readme += "\n" + rot + rev
	withKeyChanges, _ := c.build()
	f.Add(withKeyChanges)
	f.Add([]byte(`{"signed":{"_type":"layout","steps":null,"inspect":null,"keys":{},"expires":"2099-01-01T00:00:00Z","readme":""},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pl, err := parseLayout(data, "layout")
		if err == nil {
			compile(pl, "layout")
		}
		v, verr := Layout(context.Background(), data, []signing.Verifier{verifier(t, "owner")}, links, Options{WithoutArtifactUnsafe: true})
		if v == nil {
			t.Fatalf("no verdict: %v", verr)
		}
		if verr == nil && (pl == nil || !bytes.Equal(pl.Payload, orig.Payload)) {
			t.Fatalf("verification passed with a changed layout: %q", data)
		}
	})
}

// FuzzEnvelope feeds DSSE envelopes (JSON) to dsse decoding and
// signing.VerifyEnvelope: a fuzzed envelope may only verify with the
// payload type and payload that were signed.
func FuzzEnvelope(f *testing.F) {
	deterministicKeys()
	ctx := context.Background()
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app","digest":{"sha256":"00"}}]}`)
	one, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, payload, key(f, "alice"))
	if err != nil {
		f.Fatal(err)
	}
	two, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, payload, key(f, "alice"), key(f, "bob"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range []*dsse.Envelope{one, two} {
		data, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, 1)
		f.Add(data, 2)
	}
	f.Add([]byte(`{"payloadType":"","payload":"","signatures":[{"keyid":"","sig":""}]}`), 1)
	f.Fuzz(func(t *testing.T, data []byte, threshold int) {
		var env dsse.Envelope
		if json.Unmarshal(data, &env) != nil {
			return
		}
		threshold = int(uint(threshold)%3) + 1
		ids, err := signing.VerifyEnvelope(ctx, &env, threshold, verifier(t, "alice"), verifier(t, "bob"))
		if err != nil {
			return
		}
		got, derr := env.DecodeB64Payload()
		if derr != nil || env.PayloadType != signing.PayloadTypeInToto || !bytes.Equal(got, payload) {
			t.Fatalf("envelope verified with type %q payload %q", env.PayloadType, got)
		}
		if len(ids) < threshold {
			t.Fatalf("threshold %d met by %d keys", threshold, len(ids))
		}
	})
}

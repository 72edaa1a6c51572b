package logserver

import (
	"encoding/json"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

// FuzzDerive: no request body makes Derive panic, and whatever it accepts
// is signed by the allowed key and carries valid subjects.
func FuzzDerive(f *testing.F) {
	s := signingtest.SignerOf(f, signing.ED25519)
	keys := Keys{signingtest.Verifier(f, s)}
	f.Add(provenance(f, s, "run", "a", "b"))
	f.Add(link(f, s, "run", "build", "a.out"))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`{"signed":{"_type":"layout"},"signatures":[]}`))
	f.Add([]byte(`{"signed":{"_type":"link","products":{"a":{"sha256":"zz"}}},"signatures":[{"keyid":"x","sig":"00"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		e, err := Derive(ctx, doc, keys)
		if err != nil {
			return
		}
		if e.Digest == "" || len(e.Subjects) > MaxSubjects {
			t.Fatalf("accepted %+v", e)
		}
	})
}

func FuzzParseSearchQuery(f *testing.F) {
	f.Add("subject=sha256:" + sha("a") + "&kind=link&run=r&cursor=i10&limit=5")
	f.Add("cursor=i18446744073709551615")
	f.Add("cursor=i00&limit=0")
	f.Add("subject=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, from, _, err := ParseSearchQuery(raw)
		if err != nil {
			return
		}
		if c := FormatCursor(from); from > 0 {
			if back, err := ParseCursor(c); err != nil || back != from {
				t.Fatalf("cursor %d does not round-trip: %v", from, err)
			}
		}
		_ = q.String()
	})
}

// FuzzVerifySearch: no search answer makes the client panic, and an
// answer it accepts has results that match the query in order.
func FuzzVerifySearch(f *testing.F) {
	fx := newFixture(f, nil)
	for i := range 3 {
		if _, err := fx.client.Add(ctx, provenance(f, fx.signer, "run", docName(i), "pop")); err != nil {
			f.Fatal(err)
		}
	}
	q := Query{Subject: subject("pop")}
	a, err := fx.srv.Search(ctx, q, 0, 10)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(a)
	f.Add(good)
	f.Add([]byte(`{"checkpoint":"","results":[{"index":1}],"more":true}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a SearchAnswer
		if json.Unmarshal(raw, &a) != nil {
			return
		}
		c, _ := NewClient(fx.http.URL, fx.key.Verifier, nil)
		p, err := c.VerifySearch(ctx, a, q, 0, 10)
		if err != nil {
			return
		}
		for i, r := range p.Results {
			if !q.matches(r.Entry) || (i > 0 && r.Index <= p.Results[i-1].Index) {
				t.Fatalf("accepted result %d: %+v", i, r)
			}
		}
	})
}

func FuzzParseTLogProof(f *testing.F) {
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\norigin\n4\nAAAA\n\n— origin sig\n"))
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra AA==\nindex 0\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		i, hashes, cp, err := ParseTLogProof(raw)
		if err != nil {
			return
		}
		a := Answer{}
		a.Index, a.Hashes, a.Checkpoint = i, hashes, cp
		if i2, h2, _, err := ParseTLogProof(TLogProof(a)); err != nil || i2 != i || len(h2) != len(hashes) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzVerifyAnswer: no entry answer makes the client panic.
func FuzzVerifyAnswer(f *testing.F) {
	fx := newFixture(f, nil)
	doc := provenance(f, fx.signer, "run", "x")
	v, err := fx.client.Add(ctx, doc)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(v.Answer)
	f.Add(good)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a Answer
		if json.Unmarshal(raw, &a) != nil {
			return
		}
		c, _ := NewClient(fx.http.URL, fx.key.Verifier, nil)
		got, err := c.VerifyAnswer(ctx, a, v.Entry.Digest)
		if err == nil && got.Entry.Digest != v.Entry.Digest {
			t.Fatalf("accepted an answer about %s", got.Entry.Digest)
		}
	})
}

package vsa

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

const (
	imageHex  = "1111111111111111111111111111111111111111111111111111111111111111"
	otherHex  = "2222222222222222222222222222222222222222222222222222222222222222"
	layoutHex = "3333333333333333333333333333333333333333333333333333333333333333"
	olderHex  = "4444444444444444444444444444444444444444444444444444444444444444"
	verifier  = "https://stepseal.dev/controller/prod"
	resource  = "oci://registry.example.com/team/app"
	// builderKeyID signed the test VSA's link input, controllerKeyID its
	// provenance input.
	builderKeyID    = "abcd1234aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	controllerKeyID = "5555555555555555555555555555555555555555555555555555555555555555"
)

var now = time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)

func summary() Summary {
	sub, _ := ImageSubject("registry.example.com/team/app@sha256:" + imageHex)
	return Summary{
		VerifierID: verifier, Time: now.Add(-time.Hour), ResourceURI: resource,
		Subjects:  []*intoto.ResourceDescriptor{sub},
		PolicyURI: PolicyURI("layouts/app.layout", "app", 3), PolicyDigest: map[string]string{"sha256": layoutHex},
		Inputs: []Input{{URI: InputURI("build.compile.abcd1234.link", 7), Digest: map[string]string{"sha256": otherHex}, Signers: []string{builderKeyID}},
			{URI: InputURI("ns/pr.abcd1234.pipelinerun.provenance", -1), Digest: map[string]string{"sha256": olderHex}, Signers: []string{controllerKeyID}}},
		Result: Passed,
	}
}

func expect(key signing.Verifier) Expect {
	return Expect{Key: key, VerifierID: verifier, SubjectDigest: "sha256:" + imageHex, ResourceURI: resource,
		PolicyDigest: "sha256:" + layoutHex, Now: now}
}

func sign(t testing.TB, s Summary, signer signing.Signer) []byte {
	t.Helper()
	_, data, err := Sign(context.Background(), s, signer)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRoundTrip: a VSA signed by the verifier key verifies, and its JSON
// uses the spec's camelCase field names (protojson), not the Go type's
// snake_case json tags.
func TestRoundTrip(t *testing.T) {
	key := signingtest.Signer(t)
	data := sign(t, summary(), key)
	v, err := Verify(context.Background(), data, expect(signingtest.Verifier(t, key)))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Predicate.GetInputAttestations(); len(got) != 2 || got[0].GetUri() != "stepseal-store:build.compile.abcd1234.link#log-index=7" {
		t.Errorf("inputs %v", got)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	payload, _ := env.DecodeB64Payload()
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	pred := raw["predicate"].(map[string]any)
	for _, k := range []string{"verifier", "timeVerified", "resourceUri", "policy", "inputAttestations", "verificationResult", "verifiedLevels", "slsaVersion"} {
		if _, ok := pred[k]; !ok {
			t.Errorf("predicate has no %s: %s", k, payload)
		}
	}
	if raw["predicateType"] != PredicateType || raw["_type"] != intoto.StatementTypeUri {
		t.Errorf("statement %s", payload)
	}
	if pred["verifier"].(map[string]any)["id"] != verifier {
		t.Errorf("verifier %v", pred["verifier"])
	}
	// A FAILED VSA is signed too (useful as a record), and refused.
	s := summary()
	s.Result = Failed
	_, err = Verify(context.Background(), sign(t, s, key), expect(signingtest.Verifier(t, key)))
	rejecttest.Is(t, "FAILED", err, reject.ErrPolicy)
	if !errors.Is(err, ErrFailed) {
		t.Errorf("FAILED: %v", err)
	}
}

// resign re-signs an envelope's payload (after edit) with signer, under
// payloadType.
func resign(t testing.TB, data []byte, signer signing.Signer, payloadType string, edit func(map[string]any)) []byte {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	payload, _ := env.DecodeB64Payload()
	if edit != nil {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		payload, _ = json.Marshal(m)
	}
	e, err := signing.SignEnvelope(context.Background(), payloadType, payload, signer)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(e)
	return out
}

// TestForgeriesRefused: each forgery is refused with its exact typed error
// and reason.
func TestForgeriesRefused(t *testing.T) {
	key, tenant := signingtest.Signer(t), signingtest.Signer(t)
	good := sign(t, summary(), key)
	with := func(f func(*Summary)) []byte {
		s := summary()
		f(&s)
		return sign(t, s, key)
	}
	cases := []struct {
		name   string
		data   []byte
		exp    func(*Expect)
		want   error
		reason *reject.Reason
		says   string
	}{
		{name: "signed by a tenant key", data: sign(t, summary(), tenant), want: ErrSignature, reason: reject.ErrSignature, says: "verifier key"},
		{name: "FAILED edited to PASSED under the verifier's signature", data: func() []byte {
			var o dsse.Envelope
			_ = json.Unmarshal(with(func(s *Summary) { s.Result = Failed }), &o)
			o.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(mustDecode(t, o.Payload), Failed, Passed, 1)))
			b, _ := json.Marshal(o)
			return b
		}(), want: ErrSignature, reason: reject.ErrSignature},
		{name: "another subject digest", data: good, exp: func(e *Expect) { e.SubjectDigest = "sha256:" + otherHex }, want: ErrSubject, reason: reject.ErrMismatch, says: otherHex},
		{name: "FAILED", data: with(func(s *Summary) { s.Result = Failed }), want: ErrFailed, reason: reject.ErrPolicy, says: "FAILED"},
		{name: "another verifier id", data: with(func(s *Summary) { s.VerifierID = "https://evil.example/verifier" }), want: ErrVerifier, reason: reject.ErrUnauthorized, says: "evil.example"},
		{name: "older layout digest", data: with(func(s *Summary) { s.PolicyDigest = map[string]string{"sha256": olderHex} }), want: ErrPolicyDigest, reason: reject.ErrMismatch, says: olderHex},
		{name: "other policy uri", data: good, exp: func(e *Expect) { e.PolicyURI = "layouts/other.layout" }, want: ErrPolicyDigest, reason: reject.ErrMismatch},
		{name: "too old", data: with(func(s *Summary) { s.Time = now.Add(-25 * time.Hour) }), want: ErrTooOld, reason: reject.ErrExpired, says: "25h0m0s old"},
		{name: "future time", data: with(func(s *Summary) { s.Time = now.Add(time.Hour) }), want: ErrFuture, reason: reject.ErrExpired, says: "after now"},
		{name: "another resource", data: good, exp: func(e *Expect) { e.ResourceURI = "oci://registry.example.com/other" }, want: ErrResourceURI, reason: reject.ErrMismatch},
		{name: "level required", data: good, exp: func(e *Expect) { e.Levels = []string{"SLSA_BUILD_LEVEL_3"} }, want: ErrLevel, reason: reject.ErrPolicy},
		{name: "wrong predicateType", data: resign(t, good, key, signing.PayloadTypeInToto, func(m map[string]any) {
			m["predicateType"] = "https://slsa.dev/provenance/v1"
		}), want: ErrPredicateType, reason: reject.ErrMismatch, says: "provenance"},
		{name: "payload type", data: resign(t, good, key, "application/json", nil), want: ErrPayloadType, reason: reject.ErrMalformed, says: "application/json"},
		{name: "snake_case predicate (encoding/json)", data: resign(t, good, key, signing.PayloadTypeInToto, func(m map[string]any) {
			p := m["predicate"].(map[string]any)
			p["verifier"] = map[string]any{"id": verifier, "unknown": 1}
		}), want: ErrMalformed, reason: reject.ErrMalformed},
		{name: "not an envelope", data: []byte(`{"payload":"e30="}`), want: ErrMalformed, reason: reject.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exp := expect(signingtest.Verifier(t, key))
			if c.exp != nil {
				c.exp(&exp)
			}
			_, err := Verify(context.Background(), c.data, exp)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			rejecttest.Is(t, c.name, err, c.reason)
			if c.says != "" && !strings.Contains(err.Error(), c.says) {
				t.Errorf("%v does not say %q", err, c.says)
			}
		})
	}
}

func mustDecode(t testing.TB, s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExpectRequired: verifying without saying whose, about what and
// against which layout is the caller's error, not a verdict.
func TestExpectRequired(t *testing.T) {
	key := signingtest.Signer(t)
	data := sign(t, summary(), key)
	for name, f := range map[string]func(*Expect){
		"no key":           func(e *Expect) { e.Key = nil },
		"no verifier id":   func(e *Expect) { e.VerifierID = "" },
		"no subject":       func(e *Expect) { e.SubjectDigest = "" },
		"no resource":      func(e *Expect) { e.ResourceURI = "" },
		"no layout digest": func(e *Expect) { e.PolicyDigest = "" },
	} {
		exp := expect(signingtest.Verifier(t, key))
		f(&exp)
		_, err := Verify(context.Background(), data, exp)
		if err == nil || reject.Of(err) != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	exp := expect(signingtest.Verifier(t, key))
	exp.PolicyDigest, exp.WithoutPolicyDigestUnsafe = "", true
	if _, err := Verify(context.Background(), data, exp); err != nil {
		t.Errorf("unsafe without layout digest: %v", err)
	}
}

// TestStatementRefusesIncomplete: Sign refuses a summary missing a field
// the spec requires.
func TestStatementRefusesIncomplete(t *testing.T) {
	for name, f := range map[string]func(*Summary){
		"verifier": func(s *Summary) { s.VerifierID = "" },
		"resource": func(s *Summary) { s.ResourceURI = "" },
		"policy":   func(s *Summary) { s.PolicyDigest = nil },
		"subjects": func(s *Summary) { s.Subjects = nil },
		"result":   func(s *Summary) { s.Result = "MAYBE" },
		"time":     func(s *Summary) { s.Time = time.Time{} },
	} {
		s := summary()
		f(&s)
		if _, err := Statement(s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ImageSubject("registry.example.com/app:latest"); err == nil {
		t.Error("a tag taken as an image subject")
	}
}

// FuzzParse: Parse and Verify never panic on any input, and what Parse
// accepts re-marshals.
func FuzzParse(f *testing.F) {
	key := signingtest.Signer(f)
	f.Add(sign(f, summary(), key))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}`))
	f.Add([]byte(`{}`))
	exp := expect(signingtest.Verifier(f, key))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := Parse(data, "fuzz"); err == nil {
			if _, err := protojson.Marshal(v.Statement); err != nil {
				t.Fatal(err)
			}
		} else if reject.Of(err) == nil {
			t.Fatalf("Parse error of no reason: %v", err)
		}
		if _, err := Verify(context.Background(), data, exp); err != nil && reject.Of(err) == nil {
			t.Fatalf("Verify error of no reason: %v", err)
		}
	})
}

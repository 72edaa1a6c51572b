package vsa

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/verify"
)

// revoking is a lookup whose layout revokes keys (keyID → reason) at
// version v4 of its role, and records the policy uris it was asked for.
func revoking(asked *[]string, keys map[string]string) RevocationLookup {
	return func(_ context.Context, uri string) (*Revocations, error) {
		*asked = append(*asked, uri)
		return &Revocations{By: "layouts/app.layout (TUF role app v4)", Keys: keys}, nil
	}
}

// TestRevokedInputRefused (W12): a VSA one of whose inputs was signed by a
// key the layout it names revokes now is refused with *RevokedInputError,
// naming the key, the input and its step, the revoking TUF version, the
// reason and timeVerified — also when the layout's digest changed too (a
// revocation releases a new layout), so that the refusal names the key
// rather than only "another layout". Keys it does not revoke (another
// key revoked, or none) leave the VSA accepted.
func TestRevokedInputRefused(t *testing.T) {
	key := signingtest.Signer(t)
	data := sign(t, summary(), key)
	var asked []string
	exp := expect(signingtest.Verifier(t, key))
	exp.Revocations = revoking(&asked, map[string]string{builderKeyID: "laptop stolen"})
	_, err := Verify(context.Background(), data, exp)
	var rie *RevokedInputError
	if !errors.As(err, &rie) {
		t.Fatalf("got %v, want a *RevokedInputError", err)
	}
	want := RevokedInputError{Input: "stepseal-store:build.compile.abcd1234.link#log-index=7", Step: "build.compile", KeyID: builderKeyID,
		By: "layouts/app.layout (TUF role app v4)", Reason: "laptop stolen", TimeVerified: now.Add(-time.Hour)}
	if *rie != want {
		t.Errorf("error %+v, want %+v", *rie, want)
	}
	for _, target := range []error{ErrRevokedInput, verify.ErrRevokedKey} {
		if !errors.Is(err, target) {
			t.Errorf("%v is not %v", err, target)
		}
	}
	rejecttest.Is(t, "revoked input", err, reject.ErrUnauthorized)
	for _, s := range []string{builderKeyID, `step "build.compile"`, "TUF role app v4", "laptop stolen", "2026-12-07T04:00:00Z", "revoked by layout layouts/app.layout (TUF role app v4)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not say %q", err, s)
		}
	}
	if !slices.Equal(asked, []string{PolicyURI("layouts/app.layout", "app", 3)}) {
		t.Errorf("looked up %v, want the VSA's policy uri", asked)
	}

	// The revocation released a new layout: the digest differs too, and
	// the key is still what the refusal names.
	exp.PolicyDigest = "sha256:" + olderHex
	if _, err := Verify(context.Background(), data, exp); !errors.Is(err, ErrRevokedInput) || errors.Is(err, ErrPolicyDigest) {
		t.Errorf("revoked and new layout: %v", err)
	}

	// Both inputs revoked: the first is named, the other counted.
	exp = expect(signingtest.Verifier(t, key))
	exp.Revocations = revoking(&asked, map[string]string{builderKeyID: "stolen", controllerKeyID: "rotated badly"})
	if _, err := Verify(context.Background(), data, exp); !errors.As(err, &rie) || rie.More != 1 || !strings.Contains(err.Error(), "and 1 more input") {
		t.Errorf("two revoked inputs: %v", err)
	}

	// Not revoked: another key, or none.
	for name, keys := range map[string]map[string]string{"another key": {strings.Repeat("9", 64): "gone"}, "none": nil} {
		exp := expect(signingtest.Verifier(t, key))
		exp.Revocations = revoking(&asked, keys)
		if _, err := Verify(context.Background(), data, exp); err != nil {
			t.Errorf("%s revoked: %v", name, err)
		}
	}
}

// TestRevocationsFailClosed: with revocations to check, a VSA of the older
// format (inputs without ExtInputSigners), one listing no input and one
// whose policy is not a TUF layout cannot be shown free of revoked keys
// and are refused with their typed errors; a trust source that cannot be
// read is "could not check". Without a lookup the older format verifies as
// it did.
func TestRevocationsFailClosed(t *testing.T) {
	key := signingtest.Signer(t)
	var asked []string
	lookup := revoking(&asked, nil)
	older := summary()
	older.Inputs = slices.Clone(older.Inputs)
	older.Inputs[1].Signers = nil
	notTUF := summary()
	notTUF.PolicyURI = "https://policies.example/app.layout"
	noInputs := summary()
	noInputs.Inputs = nil
	unavailable := fmt.Errorf("TUF repository: %w", reject.ErrUnavailable)
	for _, c := range []struct {
		name   string
		s      Summary
		lookup RevocationLookup
		want   error
		reason error
		says   string
	}{
		{"older format", older, lookup, ErrNoInputSigners, reject.ErrMissing, "stepseal-store:ns/pr.abcd1234.pipelinerun.provenance has no " + ExtInputSigners},
		{"no input", noInputs, lookup, ErrNoInputSigners, reject.ErrMissing, "lists no input"},
		{"policy not a TUF layout", notTUF, lookup, ErrPolicyURI, reject.ErrUnsupported, "policies.example"},
		{"trust source unreachable", summary(), func(context.Context, string) (*Revocations, error) { return nil, unavailable }, reject.ErrUnavailable, reject.ErrUnableToCheck, "revocations of tuf:layouts/app.layout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			exp := expect(signingtest.Verifier(t, key))
			exp.Revocations = c.lookup
			_, err := Verify(context.Background(), sign(t, c.s, key), exp)
			if !errors.Is(err, c.want) || !errors.Is(err, c.reason) {
				t.Fatalf("got %v, want %v (%v)", err, c.want, c.reason)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("%q does not say %q", err, c.says)
			}
		})
	}
	if _, err := Verify(context.Background(), sign(t, older, key), expect(signingtest.Verifier(t, key))); err != nil {
		t.Errorf("older format without a revocation check: %v", err)
	}
}

// TestSignersField: the signers are in the signed payload, under the
// extension field of each input; Parse returns them by input; changing
// them breaks the verifier's signature, and a field that is not a list of
// distinct in-toto key IDs is refused as malformed even under the
// verifier's signature.
func TestSignersField(t *testing.T) {
	key, tenant := signingtest.Signer(t), signingtest.Signer(t)
	data := sign(t, summary(), key)
	v, err := Parse(data, "vsa")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Inputs) != 2 || !slices.Equal(v.Inputs[0].Signers, []string{builderKeyID}) || !slices.Equal(v.Inputs[1].Signers, []string{controllerKeyID}) {
		t.Fatalf("inputs %+v", v.Inputs)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	payload := mustDecode(t, env.Payload)
	if !strings.Contains(payload, `"`+ExtInputSigners+`":["`+builderKeyID+`"]`) {
		t.Fatalf("payload does not carry the field: %s", payload)
	}
	var asked []string
	exp := expect(signingtest.Verifier(t, key))
	exp.Revocations = revoking(&asked, map[string]string{builderKeyID: "stolen"})

	// The revoked key's ID swapped for another in the signed payload.
	tampered := env
	tampered.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(payload, builderKeyID, strings.Repeat("7", 64), 1)))
	b, _ := json.Marshal(tampered)
	_, err = Verify(context.Background(), b, exp)
	rejecttest.Is(t, "tampered signers", err, reject.ErrSignature)
	if !errors.Is(err, ErrSignature) {
		t.Errorf("tampered signers: %v", err)
	}
	// Re-signed by a tenant after removing the field.
	stripped := resign(t, data, tenant, signing.PayloadTypeInToto, func(m map[string]any) {
		for _, in := range m["predicate"].(map[string]any)["inputAttestations"].([]any) {
			delete(in.(map[string]any), ExtInputSigners)
		}
	})
	if _, err := Verify(context.Background(), stripped, exp); !errors.Is(err, ErrSignature) {
		t.Errorf("stripped and re-signed by a tenant: %v", err)
	}

	for name, val := range map[string]any{
		"not a list":      builderKeyID,
		"empty":           []any{},
		"not a string":    []any{7},
		"not a key ID":    []any{"abcd1234"},
		"upper case":      []any{strings.ToUpper(builderKeyID)},
		"listed twice":    []any{builderKeyID, builderKeyID},
		"an object value": map[string]any{"keyid": builderKeyID},
	} {
		bad := resign(t, data, key, signing.PayloadTypeInToto, func(m map[string]any) {
			m["predicate"].(map[string]any)["inputAttestations"].([]any)[0].(map[string]any)[ExtInputSigners] = val
		})
		if _, err := Verify(context.Background(), bad, exp); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), ExtInputSigners) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Another URI-named field stays unknown: refused (strict parsing).
	other := resign(t, data, key, signing.PayloadTypeInToto, func(m map[string]any) {
		m["predicate"].(map[string]any)["inputAttestations"].([]any)[0].(map[string]any)["https://example.com/x"] = "y"
	})
	if _, err := Verify(context.Background(), other, exp); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown input field: %v", err)
	}
}

// TestSignerKeyIDs reads the signers of what a VSA lists as inputs: a
// signed in-toto link and a DSSE envelope.
func TestSignerKeyIDs(t *testing.T) {
	key := signingtest.Signer(t)
	id, _ := key.KeyID()
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, []byte(`{}`), key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(env)
	if got, err := SignerKeyIDs(b); err != nil || !slices.Equal(got, []string{id}) {
		t.Errorf("DSSE: %v %v, want %s", got, err, id)
	}
	link := `{"signed":{"_type":"link"},"signatures":[{"keyid":"` + builderKeyID + `","sig":"00"},{"keyid":"` + controllerKeyID + `","sig":"00"}]}`
	if got, err := SignerKeyIDs([]byte(link)); err != nil || !slices.Equal(got, []string{builderKeyID, controllerKeyID}) {
		t.Errorf("link: %v %v", got, err)
	}
	for _, bad := range []string{`{"signatures":[]}`, `{"signatures":[{"sig":"00"}]}`, `{"signatures":[{"keyid":"x"}]}`, `[`} {
		if got, err := SignerKeyIDs([]byte(bad)); err == nil {
			t.Errorf("%s: %v", bad, got)
		}
	}
}

// TestPolicyURI: what PolicyURI writes, ParsePolicyURI reads back; what
// it did not write is ErrPolicyURI.
func TestPolicyURI(t *testing.T) {
	u := PolicyURI("layouts/app.layout", "builds", 12)
	if u != "tuf:layouts/app.layout?role=builds&version=12" {
		t.Errorf("PolicyURI %q", u)
	}
	if p, r, v, err := ParsePolicyURI(u); err != nil || p != "layouts/app.layout" || r != "builds" || v != 12 {
		t.Errorf("ParsePolicyURI(%q) = %q %q %d %v", u, p, r, v, err)
	}
	for _, bad := range []string{"", "layouts/app.layout", "tuf:layouts/app.layout", "tuf:?role=a&version=1",
		"tuf:layouts/app.layout?role=a", "tuf:layouts/app.layout?role=a&version=0", "tuf:layouts/app.layout?role=a&version=x",
		"tuf:layouts/app.layout?role=a&version=1&x=2", "tuf:layouts/app.layout?role=a&role=b&version=1",
		"tuf:../app.layout?role=a&version=1", "tuf:/app.layout?role=a&version=1",
		"tuf:layouts/app.layout?role=&version=1", "tuf:layouts/app.layout?role=%00&version=1", "tuf:lay\nouts?role=a&version=1"} {
		if _, _, _, err := ParsePolicyURI(bad); !errors.Is(err, ErrPolicyURI) {
			t.Errorf("ParsePolicyURI(%q): %v", bad, err)
		}
	}
}

// FuzzParsePolicyURI: the parser of policy.uri never panics, refuses with
// ErrPolicyURI, and what it accepts PolicyURI writes back to a uri it
// reads the same.
func FuzzParsePolicyURI(f *testing.F) {
	f.Add(PolicyURI("layouts/app.layout", "builds", 3))
	f.Add("tuf:layouts/app.layout?role=a&version=1&version=2")
	f.Add("tuf:%zz?role=a&version=1")
	f.Fuzz(func(t *testing.T, uri string) {
		p, r, v, err := ParsePolicyURI(uri)
		if err != nil {
			if !errors.Is(err, ErrPolicyURI) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		p2, r2, v2, err := ParsePolicyURI(PolicyURI(p, r, v))
		if err != nil || p2 != p || r2 != r || v2 != v {
			t.Fatalf("%q → %q %q %d → %q %q %d %v", uri, p, r, v, p2, r2, v2, err)
		}
	})
}

// FuzzSignerKeyIDs: the reader of stored attestations' signers never
// panics and returns only distinct in-toto key IDs.
func FuzzSignerKeyIDs(f *testing.F) {
	f.Add([]byte(`{"signatures":[{"keyid":"` + builderKeyID + `"}]}`))
	f.Add([]byte(`{"signatures":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := SignerKeyIDs(data)
		if err == nil && checkSigners(ids) != nil {
			t.Fatalf("accepted %v", ids)
		}
	})
}

package admission

import (
	"errors"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
)

func TestParsePolicyRefuses(t *testing.T) {
	head := "apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n"
	dg := "sha256:" + strings.Repeat("a", 64)
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown field":   {head + "- {name: a, images: [\"**\"], require: digest, digests: [\"" + dg + "\"], extra: 1}", "unknown field"},
		"wrong kind":      {"apiVersion: stepseal.dev/v1alpha1\nkind: PlatformPolicy\nrules: []", "apiVersion/kind"},
		"no rules":        {head, "no rules"},
		"bad require":     {head + "- {name: a, images: [\"**\"], require: trusted}", "require must be"},
		"bad mode":        {head + "- {name: a, images: [\"**\"], require: digest, mode: audit, digests: [\"" + dg + "\"]}", "mode must be"},
		"bad glob":        {head + "- {name: a, images: [\"a/b**\"], require: digest, digests: [\"" + dg + "\"]}", "whole path segment"},
		"no images":       {head + "- {name: a, require: digest, digests: [\"" + dg + "\"]}", "no images"},
		"sha1 digest":     {head + "- {name: a, images: [\"**\"], require: digest, digests: [\"sha1:abc\"]}", "not sha256"},
		"signed no keys":  {head + "- {name: a, images: [\"**\"], require: signed}", "needs keys"},
		"bad key":         {head + "- {name: a, images: [\"**\"], require: signed, keys: [\"nope\"]}", "key 0"},
		"vsa no verifier": {head + "- {name: a, images: [\"**\"], require: vsa}", "vsa.verifier"},
		"vsa bad age":     {head + "- {name: a, images: [\"**\"], require: vsa, vsa: {verifier: v, maxAge: -1h}}", "maxAge"},
		"mixed":           {head + "- {name: a, images: [\"**\"], require: digest, digests: [\"" + dg + "\"], keysFrom: trust}", "belong to"},
		"duplicate name":  {head + "- {name: a, images: [\"**\"], require: digest, digests: [\"" + dg + "\"]}\n- {name: a, images: [\"x/**\"], require: digest, digests: [\"" + dg + "\"]}", "duplicate"},
		"bad name":        {head + "- {name: A_1, images: [\"**\"], require: digest, digests: [\"" + dg + "\"]}", "DNS label"},
	} {
		_, err := ParsePolicy([]byte(tc.doc))
		if !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, reject.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (want %q)", name, err, tc.want)
		}
	}
}

func TestPolicyFirstMatchWins(t *testing.T) {
	dg := "sha256:" + strings.Repeat("a", 64)
	p, err := ParsePolicy([]byte("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n" +
		"- {name: narrow, images: [\"ghcr.io/org/*\"], require: digest, digests: [\"" + dg + "\"]}\n" +
		"- {name: broad, images: [\"ghcr.io/**\"], require: digest, mode: warn, digests: [\"" + dg + "\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for repo, want := range map[string]string{"ghcr.io/org/a": "narrow", "ghcr.io/org/a/b": "broad", "ghcr.io/x": "broad", "ghcr.io.evil/org/a": "", "docker.io/org/a": ""} {
		r, ok := p.Match(repo)
		if got := ""; ok {
			got = r.Name
			if got != want {
				t.Errorf("%s: rule %s, want %s", repo, got, want)
			}
		} else if want != "" {
			t.Errorf("%s: no rule, want %s", repo, want)
		}
	}
}

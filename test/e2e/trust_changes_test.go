package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrustStatusSaysWhichTargetsChanged: after a release that adds one
// image, moves another's digest and removes a third, `trust status --all`
// names each path, its role and both digests (words and -o json); without
// --all the delegated role is named as not compared (and its version then
// stays unknown to this cache: the next status cannot compare from it).
func TestTrustStatusSaysWhichTargetsChanged(t *testing.T) {
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	bob := tr.key("bob.key")
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "payments", "--path", "oci/registry.example.com/payments/*",
		"--key", tr.key("bob.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d.json"))
	tr.accept(t, []string{p("d.json")})
	sha := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	release := func(name, path string, args ...string) {
		t.Helper()
		tr.ok(t, append([]string{"trust", "sign", tr.dir, "--role", "payments", "--key", bob, "--out", p(name)}, args...)...)
		tr.accept(t, []string{p(name)})
	}
	release("a.json", "", "--path", "oci/registry.example.com/payments/api:v1", "--sha256", sha('a'), "--length", "100")
	release("b.json", "", "--path", "oci/registry.example.com/payments/batch:v1", "--sha256", sha('b'), "--length", "200")
	root := filepath.Join(tr.site, "metadata", "1.root.json")
	status := func(args ...string) result {
		t.Helper()
		return tr.ok(t, append([]string{"trust", "status", "--source", tr.url, "--cache", tr.cache, "--root", root}, args...)...)
	}
	status("--all")

	release("c.json", "", "--path", "oci/registry.example.com/payments/api:v1", "--sha256", sha('c'), "--length", "101")
	release("d2.json", "", "--remove", "oci/registry.example.com/payments/batch:v1")
	release("e.json", "", "--path", "oci/registry.example.com/payments/cron:v1", "--sha256", sha('e'), "--length", "300")

	r := status("--all", "-o", "json")
	var rep struct {
		Changes struct {
			TargetChanges []struct {
				Role, Path, Change, FromSha256, ToSha256 string
			} `json:"targetChanges"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err, r)
	}
	got := []string{}
	for _, c := range rep.Changes.TargetChanges {
		got = append(got, c.Role+" "+c.Change+" "+c.Path+" "+c.FromSha256[:min(1, len(c.FromSha256))]+c.ToSha256[:min(1, len(c.ToSha256))])
	}
	want := "payments changed oci/registry.example.com/payments/api:v1 ac|payments added oci/registry.example.com/payments/cron:v1 e|payments removed oci/registry.example.com/payments/batch:v1 b"
	gotS := strings.Join(got, "|")
	for _, w := range strings.Split(want, "|") {
		if !strings.Contains(gotS, w) {
			t.Fatalf("targetChanges %q, want %q", gotS, want)
		}
	}

	// Words, and without --all: the delegated role is not compared.
	release("f.json", "", "--path", "oci/registry.example.com/payments/api:v1", "--sha256", sha('f'), "--length", "102")
	if s := status().stdout; !strings.Contains(s, "payments: target paths not compared: not loaded") {
		t.Fatalf("without --all: %s", s)
	}
	status("--all") // nothing new; loads payments v6 into the cache
	release("g.json", "", "--path", "oci/registry.example.com/payments/api:v1", "--sha256", sha('9'), "--length", "103")
	if s := status("--all").stdout; !strings.Contains(s, "payments: changed oci/registry.example.com/payments/api:v1 sha256 "+strings.Repeat("f", 64)+" → "+strings.Repeat("9", 64)+" (102 → 103 bytes)") {
		t.Fatalf("with --all: %s", s)
	}
}

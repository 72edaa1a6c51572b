package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/internal/testregistry"
)

// TestTrustResignOverOCI: the CronJob's command, `stepseal trust resign
// oci://…`, keeps the online roles of a repository published on the real
// registry alive with no volume: nothing while the timestamp is far from
// expiry; a new timestamp when it is near, which a client then trusts; the
// publisher's next accept without --published would be a rollback and
// its publish is refused; with --published its versions follow.
func TestTrustResignOverOCI(t *testing.T) {
	host := testregistry.Start(t)
	tr := newTrustRepo(t)
	dst := "oci://" + host + "/stepseal/tuf"
	root := filepath.Join(tr.dir, "metadata", "1.root.json")
	tr.ok(t, "trust", "publish", tr.dir, dst, "--insecure")
	resign := func(extra ...string) (out struct {
		Resigned  bool     `json:"resigned"`
		Written   []string `json:"written"`
		Timestamp struct {
			From int64 `json:"from"`
			To   int64 `json:"to"`
		} `json:"timestamp"`
	}) {
		t.Helper()
		r := tr.ok(t, append([]string{"trust", "resign", dst, "--online-key", tr.key("online.key"), "--root", root, "--cache", filepath.Join(tr.dir, "..", "resign-cache"), "--insecure", "-o", "json"}, extra...)...)
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err, r)
		}
		return out
	}
	if got := resign(); got.Resigned || got.Timestamp.From != 1 {
		t.Fatalf("resign a day before expiry: %+v", got)
	}
	if got := resign("--before", "48h", "--timestamp-expiry", "2h"); !got.Resigned || got.Timestamp.To != 2 || strings.Join(got.Written, ",") != "timestamp.json" {
		t.Fatalf("resign within --before: %+v", got)
	}
	status := func() string {
		t.Helper()
		return tr.ok(t, "trust", "status", "--source", dst, "--cache", tr.cache, "--root", root, "--insecure").stdout
	}
	if s := status(); !strings.Contains(s, "timestamp v0→v2,") {
		t.Fatalf("a client after resign: %s", s)
	}
	tr.ok(t, "trust", "accept", tr.dir, "--online-key", tr.key("online.key"))
	if r := ss(t, "trust", "publish", tr.dir, dst, "--insecure"); r.code != 1 || !strings.Contains(r.stderr, "published timestamp is v2") || !strings.Contains(r.stderr, "--published") {
		t.Fatalf("publishing behind the re-signer: %s", r)
	}
	tr.ok(t, "trust", "accept", tr.dir, "--online-key", tr.key("online.key"), "--published", dst, "--insecure")
	tr.ok(t, "trust", "publish", tr.dir, dst, "--insecure")
	if s := status(); !strings.Contains(s, "timestamp v2→v3,") {
		t.Fatalf("a client after the publisher followed: %s", s)
	}
}

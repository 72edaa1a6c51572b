package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyRefusesAReleasedLayoutThatDoesNotParse: the build role
// releases, through TUF, a layout file that is not a layout (TUF vouches
// for its bytes, so only the layout parser can refuse it): verify --trust
// fails closed as malformed, naming the TUF target and role version.
func TestVerifyRefusesAReleasedLayoutThatDoesNotParse(t *testing.T) {
	out := copyDir(t, goBuild(t))
	tr := newTrustRepo(t)
	tmp := t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	owner := filepath.Join(out, "keys", "owner.key")
	tr.ok(t, "trust", "delegate", tr.dir, "--role", "build", "--path", "layouts/go-build.layout",
		"--key", filepath.Join(out, "keys", "owner.pub"), "--sign-key", tr.key("targets.key"), "--out", p("d.json"))
	tr.accept(t, []string{p("d.json")})
	for name, body := range map[string]string{"garbage": "this is not a layout\n", "json": `{"signed":{"_type":"layout"},"signatures":[]}`} {
		bad := p(name + ".layout")
		if err := os.WriteFile(bad, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tr.ok(t, "trust", "sign", tr.dir, "--role", "build", "--path", "layouts/go-build.layout", "--file", bad, "--key", owner, "--out", p(name+".json"))
		tr.accept(t, []string{p(name + ".json")}, "layouts/go-build.layout="+bad)
		artifact := "dist/app.tar.gz=" + filepath.Join(out, "work", "workspaces", "dist", "app.tar.gz")
		r := ss(t, append([]string{"verify", "--layout", "go-build", "--links", filepath.Join(out, "links"), "--artifact", artifact}, tr.flags()...)...)
		all := r.stdout + r.stderr
		if r.code != 1 || !strings.Contains(all, "layouts/go-build.layout (TUF role build v") || !strings.Contains(all, "malformed") {
			t.Fatalf("%s layout released through TUF: %s", name, r)
		}
	}
}

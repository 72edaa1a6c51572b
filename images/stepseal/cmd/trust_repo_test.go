package cmd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust/repo"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := New(nil, args)
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("stepseal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestTrustRepoWorkflow runs the README's worked example through the CLI:
// init, delegate a team, a developer signs a release, accept, publish.
func TestTrustRepoWorkflow(t *testing.T) {
	keys := t.TempDir()
	for _, n := range []string{"root", "targets", "online", "alice"} {
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := signing.WriteKeyPair(keys, n, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	key := func(n string) string { return filepath.Join(keys, n) }
	dir, pub := filepath.Join(t.TempDir(), "repo"), t.TempDir()
	mustCLI(t, "trust", "init", dir, "--root-key", key("root.key"), "--targets-key", key("targets.key"), "--online-key", key("online.key"))
	prop := filepath.Join(t.TempDir(), "p.json")
	mustCLI(t, "trust", "delegate", dir, "--role", "payments", "--path", "oci/registry.example.com/payments/*",
		"--path", "layouts/payments.layout", "--key", key("alice.pub"), "--sign-key", key("targets.key"), "--out", prop)
	mustCLI(t, "trust", "accept", dir, prop, "--online-key", key("online.key"))
	mustCLI(t, "trust", "sign", dir, "--role", "payments", "--path", "oci/registry.example.com/payments/api:v1",
		"--sha256", "sha256:"+strings.Repeat("ab", 32), "--length", "1234", "--key", key("alice.key"), "--out", prop)
	out := mustCLI(t, "-o", "json", "trust", "accept", dir, prop, "--online-key", key("online.key"))
	var ch repo.Change
	if err := json.Unmarshal([]byte(out), &ch); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(ch.Roles) != 1 || ch.Roles[0] != (repo.RoleVersion{Role: "payments", Version: 1}) || ch.Timestamp != 3 {
		t.Fatalf("change %+v", ch)
	}
	out = mustCLI(t, "-o", "json", "trust", "publish", dir, pub)
	if !strings.Contains(out, `"written"`) || !strings.Contains(out, "1.payments.json") {
		t.Fatalf("publish: %s", out)
	}
	// A developer can sign against the published copy too.
	mustCLI(t, "trust", "sign", pub, "--role", "payments", "--path", "layouts/payments.layout",
		"--sha256", strings.Repeat("cd", 32), "--length", "10", "--key", key("alice.key"), "--out", prop)
	// Outside the delegation: refused, typed, nothing written.
	before, _ := os.ReadFile(prop)
	_, err := runCLI(t, "trust", "sign", dir, "--role", "payments", "--path", "oci/registry.example.com/billing/api:v1",
		"--sha256", strings.Repeat("ab", 32), "--length", "1", "--key", key("alice.key"), "--out", prop)
	if !errors.Is(err, repo.ErrOutsidePaths) {
		t.Fatalf("got %v, want ErrOutsidePaths", err)
	}
	if after, _ := os.ReadFile(prop); !bytes.Equal(before, after) {
		t.Fatal("a refused sign wrote its proposal")
	}
	// serve refuses a non-loopback address without --allow-remote.
	if _, err := runCLI(t, "trust", "serve", pub, "--addr", "0.0.0.0:0"); !errors.Is(err, repo.ErrRemoteListen) {
		t.Fatalf("serve 0.0.0.0: %v", err)
	}
}

// TestTrustRotateAndRootCeremony runs the README's rotation and root
// ceremony through the CLI.
func TestTrustRotateAndRootCeremony(t *testing.T) {
	keys := t.TempDir()
	for _, n := range []string{"root", "root2", "targets", "online", "alice", "alice2"} {
		k, err := signing.Generate(signing.ED25519)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := signing.WriteKeyPair(keys, n, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	key := func(n string) string { return filepath.Join(keys, n) }
	dir, tmp := filepath.Join(t.TempDir(), "repo"), t.TempDir()
	p := func(n string) string { return filepath.Join(tmp, n) }
	online := key("online.key")
	mustCLI(t, "trust", "init", dir, "--root-key", key("root.key"), "--targets-key", key("targets.key"), "--online-key", online)
	mustCLI(t, "trust", "delegate", dir, "--role", "payments", "--path", "oci/registry.example.com/payments/*",
		"--key", key("alice.pub"), "--sign-key", key("targets.key"), "--out", p("d.json"))
	mustCLI(t, "trust", "accept", dir, p("d.json"), "--online-key", online)
	mustCLI(t, "trust", "sign", dir, "--role", "payments", "--path", "oci/registry.example.com/payments/api:v1",
		"--sha256", strings.Repeat("ab", 32), "--length", "1234", "--key", key("alice.key"), "--out", p("r.json"))
	mustCLI(t, "trust", "accept", dir, p("r.json"), "--online-key", online)

	mustCLI(t, "trust", "rotate", dir, "--role", "payments", "--old", key("alice.pub"), "--new", key("alice2.pub"),
		"--sign-key", key("targets.key"), "--out", p("rot.json"))
	mustCLI(t, "trust", "sign", dir, "--role", "payments", "--key", key("alice2.key"), "--out", p("resign.json"))
	out := mustCLI(t, "trust", "accept", dir, p("resign.json"), p("rot.json"), "--online-key", online)
	if strings.Contains(out, "warning") {
		t.Fatalf("rotation left a role unverifiable: %s", out)
	}

	mustCLI(t, "trust", "rotate", dir, "--root", "--add-key", "root="+key("root2.pub"), "--remove-key", "root="+key("root.pub"),
		"--sign-key", key("root2.key"), "--out", p("root.json"))
	if _, err := runCLI(t, "trust", "accept", dir, p("root.json"), "--online-key", online); !errors.Is(err, repo.ErrThreshold) {
		t.Fatalf("root signed by the new key only: %v", err)
	}
	mustCLI(t, "trust", "sign", "--proposal", p("root.json"), "--key", key("root.key"), "--out", p("root.json"))
	out = mustCLI(t, "trust", "accept", dir, p("root.json"), "--online-key", online)
	if !strings.Contains(out, "accepted root v2") {
		t.Fatalf("root ceremony: %s", out)
	}

	// Revoking the role's only key is refused (rotate instead); nothing written.
	_, err := runCLI(t, "trust", "revoke", dir, "--role", "payments", "--key", key("alice2.pub"), "--sign-key", key("targets.key"), "--out", p("rev.json"))
	if !errors.Is(err, repo.ErrDelegation) {
		t.Fatalf("revoking the last key: %v", err)
	}
	if _, err := os.Stat(p("rev.json")); !os.IsNotExist(err) {
		t.Fatal("a refused revoke wrote its proposal")
	}
}

// TestTrustInitRefusesBadKeyFiles: a key file of a type or size TUF roles
// do not take, or that is not a key at all (a raw ed25519 seed), is refused
// with the reason and nothing is written.
func TestTrustInitRefusesBadKeyFiles(t *testing.T) {
	keys := t.TempDir()
	good, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := signing.WriteKeyPair(keys, "good", good, nil); err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	files := map[string][]byte{
		"p384.key":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384der}),
		"rsa1024.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa1024)}),
		"seed.key":    bytes.Repeat([]byte{7}, 32),
	}
	for name, data := range files {
		path := filepath.Join(keys, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "repo")
		_, err := runCLI(t, "trust", "init", dir, "--root-key", path, "--targets-key", filepath.Join(keys, "good.key"), "--online-key", filepath.Join(keys, "good.key"))
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		t.Logf("%s: %v", name, err)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%s: refused init wrote %s", name, dir)
		}
	}
}

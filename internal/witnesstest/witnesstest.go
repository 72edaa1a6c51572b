package witnesstest

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Bin finds omniwitness on PATH or in $(go env GOPATH)/bin; absent, the
// test fails in CI and is skipped elsewhere.
func Bin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("omniwitness"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "omniwitness")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("omniwitness not installed: hack/install-test-deps.sh installs it")
	}
	t.Skip("omniwitness not installed (run make deps)")
	return ""
}

// Witness is a running omniwitness.
type Witness struct {
	// URL is its base URL (POST URL/add-checkpoint).
	URL string
	// VKey is its public key as an Ed25519 note verifier key.
	VKey string
	// Name is its key's name, the name on its cosignature lines.
	Name string
}

// Start runs omniwitness with a new key named name, knowing the log whose
// note verifier key is logVKey (origin = the key's name), until the test
// ends. Its state (sqlite) and its log are in a temp dir; the log is
// printed if the test failed.
func Start(t testing.TB, name, logVKey string) Witness {
	t.Helper()
	bin := Bin(t)
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "witness.key")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		t.Fatal(err)
	}
	origin, _, _ := strings.Cut(strings.TrimSpace(logVKey), "+")
	logs := fmt.Sprintf("Logs:\n  - Origin: %s\n    PublicKey: %s\n    URL: http://127.0.0.1/\n", origin, strings.TrimSpace(logVKey))
	logsFile := filepath.Join(dir, "logs.yaml")
	if err := os.WriteFile(logsFile, []byte(logs), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out, err := os.Create(filepath.Join(dir, "omniwitness.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", addr, "--metrics_listen", "", "--db_file", filepath.Join(dir, "witness.db"),
		"--private_key_path", keyFile, "--additional_logs", logsFile, "--logtostderr", "--v=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("omniwitness log:\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("omniwitness did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return Witness{URL: "http://" + addr, VKey: vkey, Name: name}
}

// Policy is a witness policy file (Tessera's format) requiring w.
func (w Witness) Policy() string {
	return fmt.Sprintf("witness w %s %s\nquorum w\n", w.VKey, w.URL)
}

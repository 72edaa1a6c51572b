// Package rekortest runs a real Rekor v2 log for tests: rekor-server-posix
// (sigstore/rekor-tiles v2.3.0, installed by hack/install-test-deps.sh) on
// 127.0.0.1 with a fresh Ed25519 checkpoint key, and its POSIX tile
// directory served over HTTP as nginx serves it in rekor-tiles'
// posix-compose.yml.
package rekortest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/rekor"
	"github.com/stepseal/stepseal/pkg/signing"
)

// BinaryName is the server binary hack/install-test-deps.sh installs.
const BinaryName = "rekor-server-posix"

// Binary finds rekor-server-posix in PATH or $(go env GOPATH)/bin. Absent,
// the test fails in CI (CI set) and is skipped elsewhere, saying how to get
// it.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath(BinaryName); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0], "bin", BinaryName)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed: hack/install-test-deps.sh installs it", BinaryName)
	}
	t.Skipf("%s not installed (run make deps / hack/install-test-deps.sh)", BinaryName)
	return ""
}

// Server is a running Rekor v2 log.
type Server struct {
	// Log is how publishers and verifiers know it.
	Log rekor.Log
	// Dir is its storage directory (tiles, checkpoint), PubPEM its public
	// key file.
	Dir    string
	PubPEM string
}

// Start runs a Rekor v2 log with checkpoint origin origin (a bare host
// name; "" is "rekor.local") until the test ends. It publishes a checkpoint
// every 100 ms, so a write is answered in well under a second.
func Start(t testing.TB, origin string) *Server {
	t.Helper()
	bin := Binary(t)
	if origin == "" {
		origin = "rekor.local"
	}
	dir := t.TempDir()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := signing.MarshalPrivateKeyPEM(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "log.key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pubPEM, err := signing.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "log.pub")
	if err := os.WriteFile(pubFile, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "log")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports := freePorts(t, 3)
		logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("server-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve",
			"--storage-dir", storage,
			"--signer-filepath", keyFile,
			"--hostname", origin,
			"--http-address", "127.0.0.1", "--http-port", fmt.Sprint(ports[0]),
			"--grpc-address", "127.0.0.1", "--grpc-port", fmt.Sprint(ports[1]),
			"--http-metrics-port", fmt.Sprint(ports[2]),
			"--checkpoint-interval", "100ms", "--batch-max-age", "20ms",
			"--log-level", "warn")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		url := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		if lastErr = waitHealthy(url, done); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(os.Interrupt)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
				logFile.Close()
			})
			tiles := httptest.NewServer(http.FileServer(http.Dir(storage)))
			t.Cleanup(tiles.Close)
			return &Server{
				Log:    rekor.Log{URL: url, TilesURL: tiles.URL + "/", Origin: origin, PublicKey: pub},
				Dir:    storage,
				PubPEM: pubFile,
			}
		}
		_ = cmd.Process.Kill()
		<-done
		logFile.Close()
		out, _ := os.ReadFile(logFile.Name())
		lastErr = fmt.Errorf("%w; server output:\n%s", lastErr, out)
	}
	t.Fatalf("%s did not start: %v", BinaryName, lastErr)
	return nil
}

// waitHealthy polls url/healthz until the server answers 200, it exits, or
// 60 s pass.
func waitHealthy(url string, done <-chan error) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
		resp, err := c.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not healthy after 60s")
}

// freePorts returns n ports free on 127.0.0.1 a moment ago (Start retries
// when another process takes one meanwhile).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

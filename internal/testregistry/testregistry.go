package testregistry

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Binary is the Distribution executable looked up in PATH.
const Binary = "docker-registry"

// Server is a running registry.
type Server struct {
	// Host is "127.0.0.1:PORT"; the registry speaks plain HTTP.
	Host string
	// StorageDir is the filesystem driver's root directory; tests corrupt
	// blobs in it to play an attacker with write access to the storage.
	StorageDir string
}

// BlobPath is the file in which the registry keeps the blob with the given
// "sha256:<hex>" digest.
func (s *Server) BlobPath(digest string) string {
	hex := digest[len("sha256:"):]
	return filepath.Join(s.StorageDir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Start starts a registry for the test and returns its host:port.
func Start(t testing.TB) string { return StartServer(t).Host }

// StartServer starts a registry for the test; it is killed in t.Cleanup.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Fatal("docker-registry not installed: run make deps")
	}
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	// A port that was free a moment ago can be taken before the registry
	// binds it; retry with another one in that case.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		host := "127.0.0.1:" + strconv.Itoa(port)
		cfg := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfg, []byte(Config(host, storage)), 0o600); err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		cmd := exec.Command(bin, "serve", cfg)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if err := waitReady(host, exited, 15*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			if attempt < 2 && bytes.Contains(out.Bytes(), []byte("address already in use")) {
				continue
			}
			t.Fatalf("docker-registry on %s: %v\n%s", host, err, out.Bytes())
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return &Server{Host: host, StorageDir: storage}
	}
	t.Fatal("docker-registry: no free port")
	return nil
}

// Config is the registry configuration used by Start and hack/registry.sh:
// filesystem storage, deletes enabled, quiet logs.
func Config(addr, storageDir string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, storageDir, addr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(host string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before answering /v2/")
		case <-ctx.Done():
			return fmt.Errorf("/v2/ did not answer within %s (last error: %v)", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

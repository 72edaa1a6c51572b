// Package s3test starts a throwaway S3-compatible server for tests:
// SeaweedFS (`weed server -filer -s3`, Apache-2.0, built by
// hack/install-test-deps.sh) on loopback ports and a temporary directory,
// with one access key, so that tests sign their requests as a deployment
// does.
package s3test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Server is one running SeaweedFS with its S3 gateway.
type Server struct {
	dir, log string
	// Endpoint is the S3 endpoint (http://127.0.0.1:PORT); address buckets
	// in the path.
	Endpoint             string
	AccessKey, SecretKey string
	bin                  string
	args                 []string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// Bin is the path of weed, or "" when it is not installed (S3TEST_BIN
// overrides it; else $(go env GOPATH)/bin/weed, else PATH).
func Bin() string {
	if b := os.Getenv("S3TEST_BIN"); b != "" {
		return b
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	if p := filepath.Join(gopath, "bin", "weed"); gopath != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p
	}
	return ""
}

// Required says whether a missing weed fails the test instead of skipping
// it (CI sets S3TEST_REQUIRED, or PGTEST_REQUIRED for all its servers).
func Required() bool {
	return os.Getenv("S3TEST_REQUIRED") != "" || os.Getenv("PGTEST_REQUIRED") != ""
}

// Start starts a server for the test (skipping it when weed is not
// installed, unless Required) and stops it when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Bin()
	if bin == "" {
		if Required() {
			tb.Fatal("SeaweedFS (weed) is not installed (hack/install-test-deps.sh builds it)")
		}
		tb.Skip("SeaweedFS (weed) is not installed (hack/install-test-deps.sh builds it)")
	}
	s, err := start(bin)
	if s != nil {
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("SeaweedFS log (last 4 KiB):\n%s", s.LogTail(4096))
			}
			s.Close()
		})
	}
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "s3test-")
	if err != nil {
		return nil, err
	}
	key := make([]byte, 20)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	s := &Server{dir: dir, log: filepath.Join(dir, "weed.log"), AccessKey: "stepseal" + hex.EncodeToString(key[:4]), SecretKey: hex.EncodeToString(key[4:])}
	cfg, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name":        "stepseal",
		"credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}})
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return s, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return s, err
	}
	p, err := freePorts(8)
	if err != nil {
		return s, err
	}
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", p[6])
	args := []string{"server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + data, "-filer", "-s3",
		"-master.port=" + strconv.Itoa(p[0]), "-master.port.grpc=" + strconv.Itoa(p[1]),
		"-volume.port=" + strconv.Itoa(p[2]), "-volume.port.grpc=" + strconv.Itoa(p[3]),
		"-filer.port=" + strconv.Itoa(p[4]), "-filer.port.grpc=" + strconv.Itoa(p[5]),
		"-s3.port=" + strconv.Itoa(p[6]), "-s3.port.grpc=" + strconv.Itoa(p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.config=" + cfgPath,
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"), "-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
		"-master.telemetry=false", "-volume.preStopSeconds=0", "-master.electionTimeout=1s", "-volume.max=0", "-master.volumeSizeLimitMB=64"}
	s.bin, s.args = bin, args
	return s, s.Start()
}

// Start starts the server again after Stop, on the same directory and
// ports, and waits until the S3 gateway answers.
func (s *Server) Start() error {
	if s.cmd != nil && !s.stopped() {
		return fmt.Errorf("s3test: weed is running")
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.exited = make(chan struct{})
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("s3test: %s: %w", s.bin, err)
	}
	cmd, exited := s.cmd, s.exited
	go func() { cmd.Wait(); close(exited) }()
	// The gateway answers an unsigned request with 403 once it is up.
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("s3test: weed exited:\n%s", s.LogTail(2048))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("s3test: the S3 gateway did not answer in 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the server (its process group: SIGTERM, then SIGKILL after
// 2 s, as weed server often does not exit on SIGTERM for 20 s and more)
// and waits until it has exited; Start starts it again with its data. The
// data is what weed wrote before the stop (the machine does not go down,
// so written files are kept).
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil || s.stopped() {
		return nil
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(2 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	return nil
}

func (s *Server) stopped() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Env is the environment that gives AWS's SDK (and stepseal log serve
// --storage aws) this server's credentials.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true"}
}

// LogTail returns the last n bytes of the server's output.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Close stops the server (its process group) and removes its files.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// Pid is weed's process ID (for its CPU time in benchmarks).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

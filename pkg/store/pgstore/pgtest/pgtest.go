// Package pgtest starts a throwaway PostgreSQL server (Debian's, from
// /usr/lib/postgresql/*/bin) for tests and benchmarks: initdb and pg_ctl on
// a unix socket in a temporary directory, with password (SCRAM)
// authentication, so tests run the same connection path as a deployment.
// As root, the server runs as the "postgres" user (or "nobody"): initdb
// refuses root.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Options tune the server.
type Options struct {
	// Durable keeps PostgreSQL's fsync and synchronous commit on
	// (benchmarks); tests turn them off.
	Durable bool
	// TCP also listens on a loopback port (Server.Port).
	TCP bool
}

// Server is one running (or stopped) PostgreSQL cluster.
type Server struct {
	bin      string
	dir      string // parent of data/ and sock/
	data     string
	sock     string
	log      string
	User     string
	Password string
	// Port is the port number in the socket's name (and the TCP port with
	// Options.TCP).
	Port int
	opts Options
	cred *syscall.Credential
	dbs  atomic.Int64
}

// Bin returns the directory of PostgreSQL's server binaries, or "" when
// PostgreSQL is not installed (PGTEST_BIN overrides it).
func Bin() string {
	if b := os.Getenv("PGTEST_BIN"); b != "" {
		return b
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return ""
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start starts a server for the test (skipping it when PostgreSQL is not
// installed, unless PGTEST_REQUIRED is set) and stops it when the test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin := Bin()
	if bin == "" {
		if os.Getenv("PGTEST_REQUIRED") != "" {
			tb.Fatal("PostgreSQL is not installed (hack/install-test-deps.sh installs it)")
		}
		tb.Skip("PostgreSQL is not installed (hack/install-test-deps.sh installs it)")
	}
	s, err := New(bin, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("PostgreSQL log (last 4 KiB):\n%s", s.LogTail(4096))
		}
		_ = s.Close()
	})
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// LogTail returns the last n bytes of the server's log.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	err := s.Stop()
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// New creates (initdb) a cluster with the binaries in bin, not started.
// The caller removes Dir when done.
func New(bin string, opts Options) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"), log: filepath.Join(dir, "postgres.log"),
		User: "stepseal", Password: "pw-" + hex.EncodeToString(pw), opts: opts}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if s.cred, err = serverUser(); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	// The server's own files belong to the user it runs as.
	if err := os.Mkdir(s.data, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(s.sock, 0o755); err != nil {
		return nil, err
	}
	for _, p := range []string{pwfile, s.data, s.sock} {
		if err := s.chown(p); err != nil {
			return nil, err
		}
	}
	if err := s.touch(s.log); err != nil {
		return nil, err
	}
	out, err := s.run("initdb", "-D", s.data, "-U", s.User, "--pwfile", pwfile, "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync", "--locale", "C")
	if err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	os.Remove(pwfile)
	return s, nil
}

func serverUser() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgtest: running as root and there is no postgres or nobody user to run PostgreSQL as")
}

func (s *Server) chown(p string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(p, int(s.cred.Uid), int(s.cred.Gid))
}

func (s *Server) touch(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	return s.chown(p)
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts (or restarts) the server and waits until it accepts
// connections.
func (s *Server) Start() error {
	listen := "''"
	if s.opts.TCP {
		listen = "127.0.0.1"
	}
	o := []string{"-c listen_addresses=" + listen, "-c unix_socket_directories=" + s.sock, "-p " + strconv.Itoa(s.Port),
		"-c max_connections=200", "-c shared_buffers=32MB"}
	if !s.opts.Durable {
		o = append(o, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	out, err := s.run("pg_ctl", "-D", s.data, "-l", s.log, "-w", "-t", "60", "-o", strings.Join(o, " "), "start")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s", err, out)
	}
	return nil
}

// Stop stops the server (fast shutdown: open connections are cut).
func (s *Server) Stop() error {
	out, err := s.run("pg_ctl", "-D", s.data, "-m", "fast", "-w", "stop")
	if err != nil && !strings.Contains(string(out), "not running") && !strings.Contains(string(out), "Is server running?") {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// DSN is the connection string of database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", s.sock, s.Port, s.User, s.Password, db)
}

// TCPDSN is the connection string of database db over loopback TCP (with
// Options.TCP), as a URL.
func (s *Server) TCPDSN(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", s.User, s.Password, s.Port, db)
}

// NewDatabase creates a fresh, empty database and returns its DSN.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	return s.DSN(name)
}

// Exec runs one SQL statement in database db with psql (behind the back of
// the code under test: tampering, fixtures).
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.sock, "-p", strconv.Itoa(s.Port), "-U", s.User, "-d", db, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.Password, "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: psql %q: %w\n%s", sql, err, out)
	}
	return nil
}

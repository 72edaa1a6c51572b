// Package mysqltest starts a throwaway MariaDB server (Debian's mariadbd,
// from the mariadb-server package) for tests: mariadb-install-db and
// mariadbd on a temporary data directory, unix socket and loopback port,
// with a password user for the tests' connections, the same path a
// deployment's DSN takes. As root, the server runs as the "mysql" user.
package mysqltest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Server is one running MariaDB server.
type Server struct {
	dir, data, sock, log string
	Port                 int
	User, Password       string
	bin                  string
	args                 []string
	cmd                  *exec.Cmd
	exited               chan struct{}
	dbs                  atomic.Int64
}

// Bin is the path of mariadbd, or "" when MariaDB is not installed
// (MYSQLTEST_BIN overrides it).
func Bin() string {
	if b := os.Getenv("MYSQLTEST_BIN"); b != "" {
		return b
	}
	for _, p := range []string{"/usr/sbin/mariadbd", "/usr/sbin/mysqld"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Required says whether a missing MariaDB fails the test instead of
// skipping it (CI sets MYSQLTEST_REQUIRED, or PGTEST_REQUIRED for all its
// database servers).
func Required() bool {
	return os.Getenv("MYSQLTEST_REQUIRED") != "" || os.Getenv("PGTEST_REQUIRED") != ""
}

// Start starts a server for the test (skipping it when MariaDB is not
// installed, unless Required) and stops it when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Bin()
	if bin == "" {
		if Required() {
			tb.Fatal("MariaDB is not installed (hack/install-test-deps.sh installs mariadb-server)")
		}
		tb.Skip("MariaDB is not installed (hack/install-test-deps.sh installs mariadb-server)")
	}
	s, err := start(bin)
	if s != nil {
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("MariaDB log (last 4 KiB):\n%s", s.LogTail(4096))
			}
			s.Close()
		})
	}
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "mysqltest-")
	if err != nil {
		return nil, err
	}
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	s := &Server{dir: dir, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "mysqld.sock"), log: filepath.Join(dir, "mysqld.log"),
		User: "stepseal", Password: "pw-" + hex.EncodeToString(pw)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s, err
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	var runAs []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("mysql")
		if err != nil {
			return s, fmt.Errorf("mysqltest: running as root and there is no mysql user to run MariaDB as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return s, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return s, err
		}
		runAs = []string{"--user=mysql"}
	}
	install := exec.Command(installDB(bin),
		append([]string{"--no-defaults", "--datadir=" + s.data, "--auth-root-authentication-method=normal", "--skip-test-db"}, runAs...)...)
	if out, err := install.CombinedOutput(); err != nil {
		return s, fmt.Errorf("mysqltest: mariadb-install-db: %w\n%s", err, out)
	}
	args := append([]string{"--no-defaults", "--datadir=" + s.data, "--socket=" + s.sock, "--port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1", "--log-error=" + s.log, "--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--skip-name-resolve", "--max-connections=500", "--innodb-buffer-pool-size=64M",
		// Tests: commits need not survive the machine, only the server.
		"--innodb-flush-log-at-trx-commit=2", "--skip-log-bin"}, runAs...)
	s.bin, s.args = bin, args
	if err := s.Start(); err != nil {
		return s, err
	}
	sql := fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'; GRANT ALL ON *.* TO '%s'@'127.0.0.1';", s.User, s.Password, s.User)
	if out, err := s.client("-e", sql); err != nil {
		return s, fmt.Errorf("mysqltest: creating the test user: %w\n%s", err, out)
	}
	return s, nil
}

// Start starts the server again after Stop, on the same data directory,
// socket and port, and waits until it accepts connections.
func (s *Server) Start() error {
	if s.cmd != nil && !s.stopped() {
		return fmt.Errorf("mysqltest: mariadbd is running")
	}
	s.exited = make(chan struct{})
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("mysqltest: %s: %w", s.bin, err)
	}
	cmd, exited := s.cmd, s.exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := s.client("-e", "SELECT 1")
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("mysqltest: mariadbd exited: %s\n%s", out, s.LogTail(2048))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mysqltest: mariadbd did not accept connections in 60s: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM: open connections are cut, committed
// transactions are kept) and waits until it has exited; Start starts it
// again.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil || s.stopped() {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("mysqltest: mariadbd did not stop in 20s: killed")
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

// installDB is mariadb-install-db (or mysql_install_db) on PATH or next to
// bin's directory's sibling bin/.
func installDB(bin string) string {
	for _, n := range []string{"mariadb-install-db", "mysql_install_db"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if p := filepath.Join(filepath.Dir(filepath.Dir(bin)), "bin", n); fileExists(p) {
			return p
		}
	}
	return "mariadb-install-db"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// client runs the mariadb client as root over the socket.
func (s *Server) client(args ...string) ([]byte, error) {
	name := "mariadb"
	if _, err := exec.LookPath(name); err != nil {
		name = "mysql"
	}
	return exec.Command(name, append([]string{"--no-defaults", "--socket=" + s.sock, "-uroot"}, args...)...).CombinedOutput()
}

// NewDatabase creates a fresh, empty database and returns its DSN for
// go-sql-driver/mysql over loopback TCP, with the test user's password.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	if out, err := s.client("-e", "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("mysqltest: CREATE DATABASE %s: %v\n%s", name, err, out)
	}
	return fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", s.User, s.Password, s.Port, name)
}

// Query runs sql as root in database db and returns the client's
// tab-separated output without column names.
func (s *Server) Query(db, sql string) (string, error) {
	out, err := s.client("-N", "-B", db, "-e", sql)
	if err != nil {
		return "", fmt.Errorf("mysqltest: %s: %w\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// LogTail returns the last n bytes of the server's error log.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Close stops the server and removes its files.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// Pid is mariadbd's process ID (for its CPU time in benchmarks).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// APIServerVersion is the kube-apiserver release built by
// hack/kube/build-apiserver.sh; it matches the module's k8s.io libraries.
const APIServerVersion = "v1.35.4"

// EtcdVersion is the etcd hack/kube/build-etcd.sh builds, the one
// kube-apiserver v1.35 is released with.
const EtcdVersion = "v3.6.5"

// ErrMissingBinary reports that etcd or kube-apiserver is not installed.
var ErrMissingBinary = errors.New("run make deps (hack/kube/build-apiserver.sh, hack/kube/build-etcd.sh)")

// Options configure Launch. The zero value is usable apart from Dir.
type Options struct {
	// Dir receives the certificates, token file, logs, pid files and the
	// kubeconfig. It must exist. etcd's data lives on /dev/shm, not here.
	Dir string
	// Detach lets etcd and kube-apiserver outlive this process (for
	// hack/kube/start.sh; hack/kube/stop.sh ends them by their pid files).
	// Without it they are killed when this process dies.
	Detach bool
	// APIServer is the kube-apiserver binary; default $KUBE_APISERVER, else
	// $(go env GOPATH)/bin/kube-apiserver-v1.35.4.
	APIServer string
	// Etcd is the etcd binary; default $ETCD, else $(go env GOPATH)/bin/etcd-<EtcdVersion>
	// (hack/kube/build-etcd.sh) when it exists, else etcd in PATH.
	Etcd string
	// CRDDir holds the Tekton CRD manifests; default $TEKTON_CRDS, else
	// config/300-crds of the tektoncd/pipeline module this binary links.
	CRDDir string
	// AuditPolicy, when set, is kube-apiserver's audit policy (an
	// audit.k8s.io/v1 Policy, YAML): events go, as JSON lines, to
	// Dir/audit.log (Cluster.AuditEvents), written before the response
	// (blocking mode). Off by default: auditing costs every request.
	AuditPolicy []byte
}

// Cluster is a running etcd and kube-apiserver with Tekton's CRDs.
type Cluster struct {
	dir        string
	token      string
	caPEM      []byte
	host       string // https://127.0.0.1:PORT
	apiPort    int
	etcdURL    string
	etcdData   string
	apiserver  string
	detach     bool
	audit      bool
	etcd       *process
	kubeAPI    *process
	kubeconfig string
}

// Launch starts etcd and kube-apiserver, waits for /readyz, applies the Tekton
// CRDs and waits for them to be Established, and writes Dir/kubeconfig.
func Launch(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Dir == "" {
		return nil, errors.New("kubetest: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	apiserver, etcdBin, err := binaries(o)
	if err != nil {
		return nil, err
	}
	crdDir := o.CRDDir
	if crdDir == "" {
		if crdDir, err = TektonCRDDir(ctx); err != nil {
			return nil, err
		}
	}
	c := &Cluster{dir: dir, apiserver: apiserver, detach: o.Detach, audit: len(o.AuditPolicy) > 0}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.writeCredentials(); err != nil {
		return nil, err
	}
	if c.audit {
		if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), o.AuditPolicy, 0o600); err != nil {
			return nil, err
		}
	}
	if err := c.startEtcd(ctx, etcdBin); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, 0); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := applyCRDs(ctx, c.Config(), crdDir); err != nil {
		return nil, fmt.Errorf("applying Tekton CRDs from %s: %w", crdDir, err)
	}
	return c, nil
}

// Config returns a new admin (system:masters) client config for the cluster,
// with QPS 200 and burst 400 so test fixtures are not throttled; set your own
// to measure a controller under realistic limits.
func (c *Cluster) Config() *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		QPS:             200,
		Burst:           400,
	}
}

// Kubeconfig is the path of a kubeconfig file for the cluster's admin user.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Dir holds the cluster's certificates, logs (etcd.log, kube-apiserver.log)
// and kubeconfig.
func (c *Cluster) Dir() string { return c.dir }

// RestartAPIServer stops kube-apiserver and starts it again on the same port
// and etcd, returning once it is ready. Clients keep working across it.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	if c.kubeAPI == nil {
		return errors.New("kubetest: kube-apiserver is not running")
	}
	// With clients holding watches open, kube-apiserver's graceful shutdown
	// can outlast any sensible grace period; then it is killed, which is
	// still a restart (an abrupt one, as after a crash).
	_ = c.kubeAPI.stop(10 * time.Second)
	c.kubeAPI = nil
	return c.startAPIServer(ctx, c.apiPort)
}

// Stop ends kube-apiserver and etcd and removes etcd's data. Dir is kept.
func (c *Cluster) Stop() {
	// kube-apiserver first: without etcd its shutdown takes 10 s instead of 2.
	if c.kubeAPI != nil {
		_ = c.kubeAPI.stop(30 * time.Second)
		c.kubeAPI = nil
	}
	// etcd takes 2 s to honor SIGTERM, and its data is deleted next anyway.
	if c.etcd != nil {
		_ = c.etcd.cmd.Process.Kill()
		<-c.etcd.exited
		c.etcd = nil
	}
	if c.etcdData != "" {
		_ = os.RemoveAll(c.etcdData)
		_ = os.Remove(c.etcdData + ".pid")
		c.etcdData = ""
	}
}

func binaries(o Options) (apiserver, etcd string, err error) {
	gobin := func() (string, error) {
		gopath, err := goEnv("GOPATH")
		if err != nil {
			return "", err
		}
		return filepath.Join(strings.SplitN(gopath, string(os.PathListSeparator), 2)[0], "bin"), nil
	}
	apiserver = firstNonEmpty(o.APIServer, os.Getenv("KUBE_APISERVER"))
	if apiserver == "" {
		dir, err := gobin()
		if err != nil {
			return "", "", err
		}
		apiserver = filepath.Join(dir, "kube-apiserver-"+APIServerVersion)
	}
	if fi, err := os.Stat(apiserver); err != nil || fi.IsDir() {
		return "", "", fmt.Errorf("kube-apiserver %s not found: %w", apiserver, ErrMissingBinary)
	}
	etcd = firstNonEmpty(o.Etcd, os.Getenv("ETCD"))
	if etcd == "" {
		// etcd built by hack/kube/build-etcd.sh: Debian's 3.4 cannot serve
		// streaming lists (WatchList), so informers would LIST everything.
		dir, err := gobin()
		if err != nil {
			return "", "", err
		}
		if etcd = filepath.Join(dir, "etcd-"+EtcdVersion); !isFile(etcd) {
			etcd = "etcd"
		}
	}
	if etcd, err = exec.LookPath(etcd); err != nil {
		return "", "", fmt.Errorf("etcd not found (hack/kube/build-etcd.sh): %w", ErrMissingBinary)
	}
	return apiserver, etcd, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func (c *Cluster) startEtcd(ctx context.Context, bin string) error {
	data, err := etcdDataDir()
	if err != nil {
		return err
	}
	c.etcdData = data
	if err := os.WriteFile(filepath.Join(c.dir, "etcd.datadir"), []byte(data+"\n"), 0o600); err != nil {
		return err
	}
	// A port that was free a moment ago can be taken before etcd binds it.
	for attempt := 1; ; attempt++ {
		client, peer := freePort(), freePort()
		if client == 0 || peer == 0 {
			return errors.New("kubetest: no free loopback port")
		}
		clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		p, err := c.spawn("etcd", bin,
			"--name=kubetest",
			"--data-dir="+data,
			"--listen-client-urls="+clientURL,
			"--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=kubetest="+peerURL,
			"--logger=zap",
			"--log-level=warn",
		)
		if err != nil {
			return err
		}
		c.etcd = p
		if err := recordEtcdPID(data, p.cmd.Process.Pid); err != nil {
			return err
		}
		err = p.waitReady(ctx, 20*time.Second, func(ctx context.Context) bool {
			return httpOK(ctx, http.DefaultClient, clientURL+"/health", "")
		})
		if err == nil {
			c.etcdURL = clientURL
			return nil
		}
		_ = p.stop(5 * time.Second)
		c.etcd = nil
		if attempt < 3 && p.logContains("address already in use") {
			continue
		}
		return err
	}
}

// startAPIServer starts kube-apiserver on port, or on a free port if 0.
func (c *Cluster) startAPIServer(ctx context.Context, port int) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	for attempt := 1; ; attempt++ {
		p := port
		if p == 0 {
			if p = freePort(); p == 0 {
				return errors.New("kubetest: no free loopback port")
			}
		}
		host := "https://127.0.0.1:" + strconv.Itoa(p)
		proc, err := c.spawn("kube-apiserver", c.apiserver, c.apiServerArgs(p)...)
		if err != nil {
			return err
		}
		err = proc.waitReady(ctx, 60*time.Second, func(ctx context.Context) bool {
			return httpOK(ctx, client, host+"/readyz", c.token)
		})
		if err == nil {
			c.kubeAPI, c.host, c.apiPort = proc, host, p
			return nil
		}
		_ = proc.stop(10 * time.Second)
		if attempt < 3 && proc.logContains("address already in use") {
			continue
		}
		return err
	}
}

// apiServerArgs are the minimum flags measured to work (../shared/KUBE-HARNESS.md).
func (c *Cluster) apiServerArgs(port int) []string {
	f := func(name string) string { return filepath.Join(c.dir, name) }
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--advertise-address=127.0.0.1",
		"--tls-cert-file=" + f("serving.crt"),
		"--tls-private-key-file=" + f("serving.key"),
		"--token-auth-file=" + f("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
	}
	if c.audit {
		args = append(args, "--audit-policy-file="+f("audit-policy.yaml"), "--audit-log-path="+f("audit.log"),
			"--audit-log-format=json", "--audit-log-mode=blocking")
	}
	return args
}

func (c *Cluster) writeKubeconfig() error {
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: admin
current-context: kubetest
`, c.host, base64.StdEncoding.EncodeToString(c.caPEM), c.token)
	return os.WriteFile(c.kubeconfig, []byte(kc), 0o600)
}

// process is a child etcd or kube-apiserver whose output goes to a log file.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func (c *Cluster) spawn(name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(c.dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "==== %s %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if c.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// Kill it with the test binary, even when that dies of a panic or
		// -timeout and never runs its cleanup.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	pid := strconv.Itoa(cmd.Process.Pid) + "\n"
	if err := os.WriteFile(filepath.Join(c.dir, name+".pid"), []byte(pid), 0o600); err != nil {
		return p, err
	}
	return p, nil
}

// waitReady polls ready until it reports true, the process exits, or timeout.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(ctx) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v) before it was ready; %s:\n%s", p.name, p.cmd.ProcessState, p.log, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v; %s:\n%s", p.name, timeout, p.log, p.logTail())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	if i := bytes.LastIndex(b, []byte("\n==== ")); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (p *process) logContains(s string) bool { return strings.Contains(p.logTail(), s) }

func httpOK(ctx context.Context, client *http.Client, url, token string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func goEnv(name string) (string, error) {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

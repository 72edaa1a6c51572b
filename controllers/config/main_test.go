package config

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The names the release YAML gives the controller's namespace and identity.
const (
	systemNS       = "stepseal"
	serviceAccount = "stepseal-controller"
	saUser         = "system:serviceaccount:" + systemNS + ":" + serviceAccount
	fieldManager   = "stepseal-release-test"
)

// lookTool finds a CLI in PATH or $(go env GOPATH)/bin (where
// hack/install-test-deps.sh puts the go-installed ones), or skips the test
// naming what is missing.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0], "bin", name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Skipf("%s not installed (run make deps / hack/install-test-deps.sh)", name)
	return ""
}

// applyRelease server-side applies the release YAML as the cluster admin,
// the way `kubectl apply --server-side -f` does.
func applyRelease(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	objs := kubetest.Objects(t, "*.yaml")
	kubetest.Apply(ctx, t, cfg, fieldManager, objs)
	t.Logf("release YAML applied: %d objects in %v", len(objs), time.Since(start).Round(time.Millisecond))
}

// signingKey is the cosign-format key the controller signs with.
type signingKey struct {
	pub      crypto.PublicKey
	pem      []byte // encrypted private key, as in the Secret
	password string
	secrets  [][]byte // what must never be logged: password, PEM body, raw key
}

// newSigningKey makes a cosign-format key pair with a fresh password and the
// Secret data `cosign generate-key-pair k8s://stepseal/signing-secrets`
// writes (cosign.key, cosign.password, cosign.pub).
func newSigningKey(t *testing.T) (*signingKey, map[string][]byte) {
	t.Helper()
	key, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	password := "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	pemBytes, err := signing.MarshalPrivateKeyPEM(key, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := signing.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{
		lifecycle.SecretKeyCosignKey:      pemBytes,
		lifecycle.SecretKeyCosignPassword: []byte(password),
		"cosign.pub":                      pubPEM,
	}
	k := &signingKey{pub: key.Public(), pem: pemBytes, password: password}
	k.secrets = append(k.secrets, []byte(password))
	// Every line of the encrypted PEM's body, and the unencrypted key.
	for _, line := range bytes.Split(pemBytes, []byte("\n")) {
		if len(line) > 20 && !bytes.HasPrefix(line, []byte("-----")) {
			k.secrets = append(k.secrets, line)
		}
	}
	plain, err := signing.MarshalPrivateKeyPEM(key, nil)
	if err == nil {
		for _, line := range bytes.Split(plain, []byte("\n")) {
			if len(line) > 20 && !bytes.HasPrefix(line, []byte("-----")) {
				k.secrets = append(k.secrets, line)
			}
		}
	}
	return k, data
}

// signingSecretName is the Secret the controller signs with by default
// (stepseal-config's signer.secret). The release does not ship it.
const signingSecretName = "signing-secrets"

// installSigningKey creates the signing Secret with a new key pair, as the
// operator does after applying the release; one an earlier test of this
// package created is deleted first.
func installSigningKey(t *testing.T, kube kubernetes.Interface) *signingKey {
	t.Helper()
	ctx := context.Background()
	deleteSigningSecret(t, kube)
	k, data := newSigningKey(t)
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: signingSecretName, Namespace: systemNS},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	if _, err := kube.CoreV1().Secrets(systemNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return k
}

// deleteSigningSecret removes the signing Secret if there is one.
func deleteSigningSecret(t *testing.T, kube kubernetes.Interface) {
	t.Helper()
	err := kube.CoreV1().Secrets(systemNS).Delete(context.Background(), signingSecretName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// configure merges data into the release's stepseal-config, as an operator
// would with kubectl edit; when the test ends, the data it had before is
// put back, so that no test runs on another's settings (backends, paths in
// its temporary directories).
func configure(t *testing.T, kube kubernetes.Interface, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	before, err := kube.CoreV1().ConfigMaps(systemNS).Get(ctx, settings.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cm, err := kube.CoreV1().ConfigMaps(systemNS).Get(ctx, settings.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Errorf("restoring %s: %v", settings.ConfigMapName, err)
			return
		}
		cm.Data = before.Data
		if _, err := kube.CoreV1().ConfigMaps(systemNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Errorf("restoring %s: %v", settings.ConfigMapName, err)
		}
	})
	patch, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ConfigMaps(systemNS).Patch(context.Background(), settings.ConfigMapName,
		types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// release's ServiceAccount with a token from the TokenRequest API (what the
// kubelet mounts into the controller's Pod).
func serviceAccountKubeconfig(t *testing.T, c *kubetest.Cluster, kube kubernetes.Interface) string {
	t.Helper()
	tr, err := kube.CoreV1().ServiceAccounts(systemNS).CreateToken(context.Background(), serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", systemNS, serviceAccount, err)
	}
	admin := c.Config()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	kc.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: serviceAccount}
	kc.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func ptr[T any](v T) *T { return &v }

// buildController builds images/controller (the binary ko puts in the image).
func buildController(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stepseal-controller")
	start := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, "github.com/stepseal/stepseal/images/controller").CombinedOutput()
	if err != nil {
		t.Fatalf("building the controller: %v\n%s", err, out)
	}
	t.Logf("controller built in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// controllerProc is the controller binary running out of cluster the way the
// release Deployment runs it: SYSTEM_NAMESPACE=stepseal, leader election on
// (config-leader-election), default client limits. Only the ports differ, so
// that two replicas fit on one host.
type controllerProc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func startController(t *testing.T, bin, kubeconfig, logDir, name string, args ...string) *controllerProc {
	t.Helper()
	return startControllerEnv(t, nil, bin, kubeconfig, logDir, name, args...)
}

// startControllerEnv is startController with env (KEY=value) added to the
// process's environment.
func startControllerEnv(t *testing.T, env []string, bin, kubeconfig, logDir, name string, args ...string) *controllerProc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(),
		"SYSTEM_NAMESPACE="+systemNS,
		"METRICS_PROMETHEUS_PORT="+strconv.Itoa(freePort(t)),
		"PROBES_PORT=0", "PROFILING_PORT=0")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Dies with the test binary even if that is killed by -timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &controllerProc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log: %s", name, logPath)
		}
	})
	return p
}

// stop ends the process with SIGTERM, then SIGKILL after 10 s.
func (p *controllerProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func (p *controllerProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *controllerProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *controllerProc) output(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var steps = []v1.Step{
	{Name: "fetch", Image: "alpine:3"},
	{Name: "build", Image: "golang:1.26"},
	{Name: "push", Image: "crane:latest"},
}

// finishTaskRun creates a TaskRun and writes the status Tekton would write
// when it succeeds.
func finishTaskRun(ctx context.Context, tekton versioned.Interface, ns, name string, i int) (*v1.TaskRun, error) {
	tr, err := tekton.TektonV1().TaskRuns(ns).Create(ctx, &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: steps}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return kubetest.FinishTaskRun(ctx, tekton, tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/app", i)})
}

// verifyStore checks the dir store: for each TaskRun of ns exactly one
// verified link per step and one verified provenance; nothing else for it.
func verifyStore(ctx context.Context, t *testing.T, tekton versioned.Interface, ns, dir string, pub crypto.PublicKey) {
	t.Helper()
	ds, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	verifyEntries(ctx, t, tekton, ns, ds, pub)
}

// verifyEntries checks st as verifyStore checks the dir store.
func verifyEntries(ctx context.Context, t *testing.T, tekton versioned.Interface, ns string, st store.Store, pub crypto.PublicKey) {
	t.Helper()
	verifyEntriesOf(ctx, t, tekton, ns, st, pub, steps)
}

// verifyEntriesOf is verifyEntries for TaskRuns of steps.
func verifyEntriesOf(ctx context.Context, t *testing.T, tekton versioned.Interface, ns string, st store.Store, pub crypto.PublicKey, steps []v1.Step) {
	t.Helper()
	list, err := tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := st.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	byRun := map[string][]store.Entry{}
	for _, e := range all {
		byRun[e.RunID] = append(byRun[e.RunID], e)
	}
	key, err := signing.InTotoKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		tr := &list.Items[i]
		perStep, provs := map[string]int{}, 0
		for _, e := range byRun[string(tr.UID)] {
			switch e.Kind {
			case store.KindLink:
				var mb in_toto.Metablock
				if err := json.Unmarshal(e.Data, &mb); err != nil {
					t.Fatalf("%s: link %s: %v", tr.Name, e.Name, err)
				}
				if err := mb.VerifySignature(key); err != nil {
					t.Errorf("%s: link %s: %v", tr.Name, e.Name, err)
				}
				signed, _ := json.Marshal(mb.Signed)
				var l in_toto.Link
				if err := json.Unmarshal(signed, &l); err != nil || l.Type != "link" {
					t.Fatalf("%s: link %s: signed is not a link: %v", tr.Name, e.Name, err)
				}
				perStep[l.Name]++
			case store.KindProvenance:
				var env dsse.Envelope
				if err := json.Unmarshal(e.Data, &env); err != nil {
					t.Fatal(err)
				}
				if _, err := signing.VerifyEnvelope(ctx, &env, 1, verifier); err != nil {
					t.Errorf("%s: provenance %s: %v", tr.Name, e.Name, err)
				}
				provs++
			default:
				t.Errorf("%s: unexpected %s entry %s", tr.Name, e.Kind, e.Name)
			}
		}
		for _, s := range steps {
			if c := perStep[tr.Name+"."+s.Name]; c != 1 {
				t.Errorf("%s: %d links of step %s stored, want exactly 1 (%v)", tr.Name, c, s.Name, perStep)
			}
		}
		if len(perStep) != len(steps) || provs != 1 {
			t.Errorf("%s: links of steps %v and %d provenances stored, want one link per step of %d and 1", tr.Name, perStep, provs, len(steps))
		}
	}
}

// setUp applies the release, creates the signing Secret, points the dir backend
// at a temporary directory and returns the admin clients. Tests of this
// package share the cluster and the stepseal namespace, so they run one
// after the other (no t.Parallel).
type setup struct {
	cluster  *kubetest.Cluster
	kube     kubernetes.Interface
	tekton   versioned.Interface
	key      *signingKey
	storeDir string
}

func setUp(t *testing.T) *setup {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and the controller binary")
	}
	c := kubetest.Start(t)
	s := &setup{cluster: c, storeDir: filepath.Join(t.TempDir(), "store")}
	s.kube = kubernetes.NewForConfigOrDie(c.Config())
	s.tekton = versioned.NewForConfigOrDie(c.Config())
	applyRelease(t, c.Config())
	s.key = installSigningKey(t, s.kube)
	configure(t, s.kube, map[string]string{
		settings.KeyStoreDir:       s.storeDir,
		settings.KeyRetryBaseDelay: "100ms",
		settings.KeyRetryMaxDelay:  "1s",
	})
	// Leases left by an earlier test's controllers would hold the buckets
	// for up to lease-duration; those processes are gone.
	if err := s.kube.CoordinationV1().Leases(systemNS).DeleteCollection(context.Background(),
		metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/kubetest"
)

// TestReleaseShipsNoSecret: the release must own no key material, so that
// applying it again (an upgrade) can never change or drop a key. It used to
// ship Secret signing-secrets with `stringData: {}` for the operator to fill.
func TestReleaseShipsNoSecret(t *testing.T) {
	for _, obj := range kubetest.Objects(t, "*.yaml") {
		if obj.GetKind() == "Secret" {
			t.Errorf("the release ships Secret %s/%s; key material must be the operator's, not the release's",
				obj.GetNamespace(), obj.GetName())
		}
	}
}

// kubectl runs the kubectl binary against the test cluster as its admin.
type kubectl struct {
	bin, kubeconfig string
}

// run runs kubectl with args and stdin, in dir, and returns its stdout; it
// fails the test when kubectl fails, with its stderr (kubectl prints no
// Secret data there: the data only ever goes through stdin).
func (k kubectl) run(t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(k.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// releaseFile writes controllers/config/*.yaml as one multi-document file,
// the shape of hack/release.sh's release.yaml (ko only swaps the image).
func releaseFile(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no release YAML here: %v", err)
	}
	var all bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.WriteString("---\n")
		all.Write(b)
		if !bytes.HasSuffix(b, []byte("\n")) {
			all.WriteString("\n")
		}
	}
	p := filepath.Join(t.TempDir(), "release.yaml")
	if err := os.WriteFile(p, all.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The ways the release is (re-)applied. Neither may conflict (no
// --force-conflicts) or touch the signing Secret.
var reapplies = []struct {
	name string
	args []string
}{
	{"kubectl apply -f", []string{"apply", "-f"}},
	{"kubectl apply --server-side -f", []string{"apply", "--server-side", "-f"}},
	{"kubectl apply -f (again, after the server-side apply)", []string{"apply", "-f"}},
}

// kubectlSetUp installs the release the way the README has an operator do
// it, with `kubectl apply -f release.yaml`, on a Deployment this apply
// creates (so client-side apply owns its fields, as on a real first
// install) and without any signing Secret; it points the dir backend at a
// temporary directory and clears the Leases earlier tests' controllers left.
func kubectlSetUp(t *testing.T) (*setup, kubectl, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and the controller binary")
	}
	k := kubectl{bin: lookTool(t, "kubectl")}
	c := kubetest.Start(t)
	k.kubeconfig = c.Kubeconfig()
	s := &setup{cluster: c, storeDir: filepath.Join(t.TempDir(), "store")}
	s.kube = kubernetes.NewForConfigOrDie(c.Config())
	s.tekton = versioned.NewForConfigOrDie(c.Config())
	ctx := context.Background()
	err := s.kube.AppsV1().Deployments(systemNS).Delete(ctx, "stepseal-controller", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	deleteSigningSecret(t, s.kube)
	release := releaseFile(t)
	k.run(t, "", nil, "apply", "-f", release)
	if _, err := s.kube.CoreV1().Secrets(systemNS).Get(ctx, signingSecretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after kubectl apply of the release, Secret %s/%s: %v; want it not to exist (the operator creates it)",
			systemNS, signingSecretName, err)
	}
	configure(t, s.kube, map[string]string{
		settings.KeyStoreDir:       s.storeDir,
		settings.KeyRetryBaseDelay: "100ms",
		settings.KeyRetryMaxDelay:  "1s",
	})
	if err := s.kube.CoordinationV1().Leases(systemNS).DeleteCollection(ctx,
		metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	return s, k, release
}

// writeKeyFiles writes the Secret's data as the files an operator passes
// to `kubectl create secret generic --from-file`.
func writeKeyFiles(t *testing.T, data map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range data {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// createSecretArgs is the documented command, run in the key files' dir.
var createSecretArgs = []string{"-n", systemNS, "create", "secret", "generic", signingSecretName,
	"--from-file=" + lifecycle.SecretKeyCosignKey, "--from-file=" + lifecycle.SecretKeyCosignPassword, "--from-file=cosign.pub"}

// secretData returns the signing Secret's data.
func secretData(t *testing.T, kube kubernetes.Interface) map[string][]byte {
	t.Helper()
	sec, err := kube.CoreV1().Secrets(systemNS).Get(context.Background(), signingSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Secret %s/%s: %v", systemNS, signingSecretName, err)
	}
	return sec.Data
}

// dataDiff names the keys of want that got lost or changed in got, and the
// keys got has in addition; never their values (they are key material).
func dataDiff(want, got map[string][]byte) string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, k+" dropped")
		} else if !bytes.Equal(g, v) {
			d = append(d, k+" changed")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, k+" added")
		}
	}
	sort.Strings(d)
	return strings.Join(d, ", ")
}

// TestReapplyKeepsSigningKey installs the release with `kubectl apply -f`,
// creates the signing Secret each way an operator does, and re-applies the
// release client-side, server-side and client-side again: the Secret's data
// must be exactly what was created, and no apply may conflict. Then the
// controller, running with the ServiceAccount's token, signs a TaskRun,
// the release is re-applied both ways under it, and it signs another with
// the same key.
//
// What this guards, measured on a kube-apiserver v1.35.4 with kubectl
// v1.32 against the release that shipped Secret signing-secrets with
// `stringData: {}`: `kubectl create secret` failed with AlreadyExists; a
// Secret made with `kubectl create --dry-run=client -o yaml | kubectl
// apply -f -` (the README's step then) lost cosign.key, cosign.password and
// cosign.pub at the next client-side apply of the release, and so did one
// made with `kubectl apply --server-side` (a server-side re-apply drops it
// too: the same field manager "kubectl" then owns data and applies a Secret
// without it); cosign generate-key-pair k8s:// kept its data, so its subtest
// guards only that cosign still works without the template, as do the
// TestSigningSecretCreatedAfterStart waits. And the server-side apply
// over the client-side installed Deployment conflicted on the SYSTEM_NAMESPACE
// env's fieldRef (atomic; the API server adds apiVersion: v1).
func TestReapplyKeepsSigningKey(t *testing.T) {
	s, k, release := kubectlSetUp(t)

	methods := []struct {
		name string
		// create makes the Secret from the key files in dir.
		create func(t *testing.T, dir string)
	}{
		{"kubectl apply", func(t *testing.T, dir string) {
			y := k.run(t, dir, nil, append(createSecretArgs, "--dry-run=client", "-o", "yaml")...)
			k.run(t, dir, y, "apply", "-f", "-")
		}},
		{"kubectl apply --server-side", func(t *testing.T, dir string) {
			y := k.run(t, dir, nil, append(createSecretArgs, "--dry-run=client", "-o", "yaml")...)
			k.run(t, dir, y, "apply", "--server-side", "-f", "-")
		}},
		{"kubectl create", func(t *testing.T, dir string) {
			k.run(t, dir, nil, createSecretArgs...)
		}},
	}
	for _, m := range methods {
		t.Run(m.name, func(t *testing.T) {
			deleteSigningSecret(t, s.kube)
			k.run(t, "", nil, "apply", "-f", release) // a fresh install's state
			_, data := newSigningKey(t)
			m.create(t, writeKeyFiles(t, data))
			if d := dataDiff(data, secretData(t, s.kube)); d != "" {
				t.Fatalf("%s made Secret %s/%s with other data than the key files: %s", m.name, systemNS, signingSecretName, d)
			}
			for _, r := range reapplies {
				k.run(t, "", nil, append(r.args, release)...)
				if d := dataDiff(data, secretData(t, s.kube)); d != "" {
					t.Fatalf("Secret %s/%s made with %s, after %s release.yaml: %s", systemNS, signingSecretName, m.name, r.name, d)
				}
			}
		})
	}
	t.Run("cosign generate-key-pair", func(t *testing.T) {
		cosign := lookTool(t, "cosign")
		deleteSigningSecret(t, s.kube)
		k.run(t, "", nil, "apply", "-f", release)
		cmd := exec.Command(cosign, "generate-key-pair", "k8s://"+systemNS+"/"+signingSecretName)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig, "COSIGN_PASSWORD=pw-cosign")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
		}
		data := secretData(t, s.kube)
		if len(data[lifecycle.SecretKeyCosignKey]) == 0 || string(data[lifecycle.SecretKeyCosignPassword]) != "pw-cosign" {
			t.Fatalf("cosign made Secret %s/%s with keys %v, want %s and %s", systemNS, signingSecretName,
				keysOf(data), lifecycle.SecretKeyCosignKey, lifecycle.SecretKeyCosignPassword)
		}
		for _, r := range reapplies {
			k.run(t, "", nil, append(r.args, release)...)
			if d := dataDiff(data, secretData(t, s.kube)); d != "" {
				t.Fatalf("Secret %s/%s made with cosign, after %s release.yaml: %s", systemNS, signingSecretName, r.name, d)
			}
		}
	})
	if t.Failed() {
		return
	}

	// The controller signs with a Secret made the documented way.
	deleteSigningSecret(t, s.kube)
	key, data := newSigningKey(t)
	k.run(t, writeKeyFiles(t, data), nil, createSecretArgs...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	ctrl := startController(t, buildController(t), serviceAccountKubeconfig(t, s.cluster, s.kube), t.TempDir(), "controller")
	if _, err := finishTaskRun(ctx, s.tekton, ns, "before-reapply", 0); err != nil {
		t.Fatal(err)
	}
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, 1)
	for _, r := range reapplies {
		k.run(t, "", nil, append(r.args, release)...)
	}
	if d := dataDiff(data, secretData(t, s.kube)); d != "" {
		t.Fatalf("Secret %s/%s after re-applying the release: %s", systemNS, signingSecretName, d)
	}
	cm, err := s.kube.CoreV1().ConfigMaps(systemNS).Get(ctx, settings.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data[settings.KeyStoreDir]; got != s.storeDir {
		t.Fatalf("%s's %s after re-applying the release: %q, want the operator's %q", settings.ConfigMapName, settings.KeyStoreDir, got, s.storeDir)
	}
	if _, err := finishTaskRun(ctx, s.tekton, ns, "after-reapply", 1); err != nil {
		t.Fatal(err)
	}
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, 2)
	verifyStore(ctx, t, s.tekton, ns, s.storeDir, key.pub)
	if !ctrl.running() {
		t.Fatalf("the controller exited: %v", ctrl.cmd.ProcessState)
	}
	ctrl.stop()
	assertCleanLog(t, ctrl, key)
}

// TestSigningSecretCreatedAfterStart: with the release applied and no
// signing Secret yet, the controller starts, holds a finished TaskRun
// unsigned and logs, at each retry, the Secret it is missing by name; once
// the operator runs `kubectl create secret generic signing-secrets`, the
// same process (no restart) signs the TaskRun with that key.
func TestSigningSecretCreatedAfterStart(t *testing.T) {
	s, k, _ := kubectlSetUp(t)
	if t.Failed() {
		return
	}
	// Enough attempts not to give up while the Secret is missing.
	configure(t, s.kube, map[string]string{settings.KeyMaxRetries: "1000"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := s.cluster.Namespace(t)
	ctrl := startController(t, buildController(t), serviceAccountKubeconfig(t, s.cluster, s.kube), t.TempDir(), "controller")
	if _, err := finishTaskRun(ctx, s.tekton, ns, "waits-for-key", 0); err != nil {
		t.Fatal(err)
	}

	// The log line of a failed attempt names the Secret and why.
	want := fmt.Sprintf("signing Secret %s/%s: secret", systemNS, signingSecretName)
	var line string
	for line == "" {
		for _, l := range strings.Split(string(ctrl.output(t)), "\n") {
			if strings.Contains(l, "signing failed, will retry") && strings.Contains(l, want) && strings.Contains(l, "not found") {
				line = l
				break
			}
		}
		if line != "" {
			break
		}
		if !ctrl.running() {
			t.Fatalf("the controller exited without a signing Secret: %v\n%s", ctrl.cmd.ProcessState, ctrl.output(t))
		}
		if ctx.Err() != nil {
			t.Fatalf("the controller never logged a retry naming %s/%s as not found:\n%s", systemNS, signingSecretName, ctrl.output(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("controller without the Secret: %s", line)
	tr, err := s.tekton.TektonV1().TaskRuns(ns).Get(ctx, "waits-for-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := tr.Annotations[annotations.Signed]; ok {
		t.Fatalf("TaskRun annotated %s=%s (%s) with no signing Secret", annotations.Signed, v, tr.Annotations[annotations.Error])
	}

	key, data := newSigningKey(t)
	k.run(t, writeKeyFiles(t, data), nil, createSecretArgs...)
	created := time.Now()
	kubetest.WaitTaskRunsSigned(ctx, t, s.tekton, ns, 1)
	t.Logf("signed %v after the Secret was created", time.Since(created).Round(time.Millisecond))
	verifyStore(ctx, t, s.tekton, ns, s.storeDir, key.pub)
	if !ctrl.running() {
		t.Fatalf("the controller exited: %v", ctrl.cmd.ProcessState)
	}
	ctrl.stop()
	assertCleanLog(t, ctrl, key)
}

// assertCleanLog fails when the controller was refused anything (the
// release's RBAC must suffice with or without the Secret) or logged key
// material.
func assertCleanLog(t *testing.T, ctrl *controllerProc, key *signingKey) {
	t.Helper()
	out := ctrl.output(t)
	for _, l := range bytes.Split(out, []byte("\n")) {
		if bytes.Contains(bytes.ToLower(l), []byte("forbidden")) {
			t.Errorf("the controller was refused something; its RBAC lacks a permission:\n%s", l)
		}
	}
	for _, secret := range key.secrets {
		if bytes.Contains(out, secret) {
			t.Errorf("the controller's log (%s) contains signing key material", ctrl.log)
			break
		}
	}
}

func keysOf(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

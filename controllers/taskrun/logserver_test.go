package taskrun

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// startLogServer serves a new log that allows the keys of allow, and
// returns its URL and the file of its public key.
func startLogServer(t *testing.T, allow ...signing.Verifier) (string, string) {
	t.Helper()
	dir := t.TempDir()
	key, err := logserver.KeyInDir(dir, "example.com/controller-served")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := logserver.Open(context.Background(), filepath.Join(dir, "served"), key, logserver.Options{Keys: allow})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { h.Close(); srv.Close(context.Background()) })
	return h.URL, filepath.Join(dir, "log.pub")
}

// With backends dir,logserver every entry of a TaskRun is posted to a
// served log (`stepseal log serve`) and its answer verified: the run's
// links and provenance are found there by run, stepseal.dev/log-index is
// the provenance's index, and signing again appends nothing. A server that
// does not allow the controller's key leaves the TaskRun unsigned.
func TestReconcileLogsToServedLog(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	f := newFixture(t, nil, tr)
	pub, err := signing.NewVerifier(f.Pub)
	if err != nil {
		t.Fatal(err)
	}
	url, logPub := startLogServer(t, pub)
	f.Config.OnConfigChanged(&corev1.ConfigMap{Data: map[string]string{
		settings.KeyBackends: "dir,logserver", settings.KeyStoreDir: filepath.Join(t.TempDir(), "store"),
		settings.KeyLogServerURL: url, settings.KeyLogServerKey: logPub,
	}})
	got, index := f.signLogged(t, tr)
	data, err := os.ReadFile(logPub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tlog.ParseVerifier(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := logserver.NewClient(url, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &logserver.Remote{Client: c}
	ctx := context.Background()
	links, err := r.List(ctx, store.Filter{Kind: store.KindLink, RunID: buildPushRun})
	if err != nil || len(links) != len(buildPushSteps) {
		t.Fatalf("links of the run in the served log: %d, %v; want %d", len(links), err, len(buildPushSteps))
	}
	provs, err := r.List(ctx, store.Filter{Kind: store.KindProvenance, RunID: buildPushRun})
	if err != nil || len(provs) != 1 {
		t.Fatalf("provenance in the served log: %d, %v", len(provs), err)
	}
	if p, err := c.Get(ctx, provs[0].Digest); err != nil || p.Index != index {
		t.Fatalf("provenance at index %d (%v), annotated %d", p.Index, err, index)
	}
	cp, err := c.Log().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gossip, err := tlog.ParseCheckpoint([]byte(got.Annotations[annotations.LogCheckpoint]), v)
	if err != nil || gossip.Size <= index {
		t.Fatalf("%s: %v, size %d for index %d", annotations.LogCheckpoint, err, gossip.Size, index)
	}

	got.Finalizers = []string{annotations.FinalizerTaskRun}
	if _, again, err := f.kind.attestAndStore(ctx, got, f.Config.Load()); err != nil || again != got.Annotations[annotations.LogIndex] {
		t.Fatalf("attestAndStore again: index %s, %v", again, err)
	}
	if cp2, err := c.Log().Checkpoint(ctx); err != nil || cp2.Size != cp.Size {
		t.Errorf("served log grew on retry: %d -> %d (%v)", cp.Size, cp2.Size, err)
	}

	// A server that does not allow the controller's key: not signed.
	stranger, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signing.NewVerifier(stranger.Public())
	if err != nil {
		t.Fatal(err)
	}
	other, otherPub := startLogServer(t, sv)
	tr2 := loadTaskRun(t, "build-push.json")
	f2 := newFixture(t, map[string]string{
		settings.KeyBackends: "dir,logserver", settings.KeyStoreDir: filepath.Join(t.TempDir(), "store"),
		settings.KeyLogServerURL: other, settings.KeyLogServerKey: otherPub, settings.KeyMaxRetries: "1",
	}, tr2)
	f2.Signing.OpenBackends = nil
	_ = f2.reconcile(tr2)
	if a := f2.get(tr2).Annotations; a[annotations.Signed] != "failed" || !strings.Contains(a[annotations.Error], "not signed by an allowed key") {
		t.Fatalf("a log that refuses the controller's key: %v", a)
	}
}

package lifecycle_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakekube "knative.dev/pkg/client/injection/kube/client/fake"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/pipelinerun"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
)

// countingWatcher counts the ConfigMap watches registered through it.
type countingWatcher struct {
	configmap.Watcher
	watches int
}

func (w *countingWatcher) Watch(name string, o ...configmap.Observer) {
	w.watches++
	w.Watcher.Watch(name, o...)
}

func sharedCtx(t *testing.T) (context.Context, *countingWatcher) {
	t.Helper()
	t.Setenv("SYSTEM_NAMESPACE", systemNS)
	ctx, cancel := context.WithCancel(logging.WithLogger(context.Background(), zaptest.NewLogger(t).Sugar()))
	t.Cleanup(cancel)
	ctx, _ = fakekube.With(ctx)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: settings.ConfigMapName, Namespace: systemNS},
		Data:       map[string]string{settings.KeyMaxRetries: "7"},
	}
	return ctx, &countingWatcher{Watcher: configmap.NewStaticWatcher(cm)}
}

// The TaskRun and PipelineRun controllers of one process (one Shared) get
// one stepseal-config Store watched once, one Secret informer and one set
// of metrics instruments, each with its own logger; another Shared (another
// process, another test) shares none of them.
func TestSharedCommonIsOnePerProcess(t *testing.T) {
	ctx, cmw := sharedCtx(t)
	s := lifecycle.NewShared()
	a := s.Common(ctx, cmw, taskrun.ControllerName)
	b := s.Common(ctx, cmw, pipelinerun.ControllerName)
	if a.Config != b.Config {
		t.Error("two stepseal-config Stores in one process")
	}
	if cmw.watches != 1 {
		t.Errorf("stepseal-config watched %d times, want once", cmw.watches)
	}
	if a.Secrets.Informer() != b.Secrets.Informer() {
		t.Error("two Secret informers in one process")
	}
	if a.Metrics != b.Metrics || a.Metrics == nil {
		t.Errorf("metrics %p and %p, want one shared Recorder", a.Metrics, b.Metrics)
	}
	if a.Namespace != systemNS || b.Namespace != systemNS {
		t.Errorf("namespaces %q %q, want %q", a.Namespace, b.Namespace, systemNS)
	}
	if got := b.Config.Load().MaxRetries; got != 7 {
		t.Errorf("max-retries %d, want the ConfigMap's 7", got)
	}

	ctx2, cmw2 := sharedCtx(t)
	other := lifecycle.NewShared().Common(ctx2, cmw2, taskrun.ControllerName)
	if other.Config == a.Config || other.Secrets.Informer() == a.Secrets.Informer() {
		t.Error("two Shareds share a stepseal-config Store or a Secret informer")
	}
}

// One Shared's signer cache serves both controllers (the cosign key is
// decrypted once, whichever asks first); another Shared has its own.
func TestSharedSignerCache(t *testing.T) {
	sec, _ := controllertest.SigningSecret(t, "signing-secrets", "pw")
	lister := controllertest.SecretLister(t, sec)
	s := lifecycle.NewShared()
	taskRuns := &lifecycle.Signing{Secrets: lister, SystemNamespace: systemNS, Shared: s}
	pipelineRuns := &lifecycle.Signing{Secrets: lister, SystemNamespace: systemNS, Shared: s}
	elsewhere := &lifecycle.Signing{Secrets: lister, SystemNamespace: systemNS, Shared: lifecycle.NewShared()}
	ctx, cfg := context.Background(), settings.Defaults()
	sign := func(r *lifecycle.Signing) any {
		t.Helper()
		sg, err := r.Signer(ctx, "team-a", cfg)
		if err != nil {
			t.Fatal(err)
		}
		return sg
	}
	first := sign(taskRuns)
	if sign(pipelineRuns) != first {
		t.Error("the PipelineRun controller decrypted the key again: the signer cache is not shared")
	}
	if sign(elsewhere) == first {
		t.Error("another Shared got this Shared's cached signer: state shared across Shareds")
	}
}

// Without a Shared a Signing neither signs nor opens backends.
func TestSigningWithoutShared(t *testing.T) {
	sec, _ := controllertest.SigningSecret(t, "signing-secrets", "pw")
	r := &lifecycle.Signing{Secrets: controllertest.SecretLister(t, sec), SystemNamespace: systemNS}
	ctx, cfg := context.Background(), settings.Defaults()
	if _, err := r.Signer(ctx, "team-a", cfg); !errors.Is(err, lifecycle.ErrNoShared) {
		t.Errorf("Signer without a Shared: %v, want ErrNoShared", err)
	}
	cfg.StoreDir = t.TempDir()
	if _, err := r.Backends(ctx, cfg); !errors.Is(err, lifecycle.ErrNoShared) {
		t.Errorf("Backends without a Shared: %v, want ErrNoShared", err)
	}
}

// A Shared opens a store directory once; another Shared opens its own.
func TestSharedOpenStores(t *testing.T) {
	cfg := settings.Defaults()
	cfg.StoreDir = t.TempDir()
	s := lifecycle.NewShared()
	a := &lifecycle.Signing{Shared: s}
	b := &lifecycle.Signing{Shared: s}
	c := &lifecycle.Signing{Shared: lifecycle.NewShared()}
	open := func(r *lifecycle.Signing) any {
		t.Helper()
		bs, err := r.Backends(context.Background(), cfg)
		if err != nil || len(bs) != 1 {
			t.Fatalf("backends %v, %v", bs, err)
		}
		return bs[0].Store
	}
	first := open(a)
	if open(b) != first {
		t.Error("one Shared opened the directory store twice")
	}
	if open(c) == first {
		t.Error("another Shared got this Shared's open store")
	}
}

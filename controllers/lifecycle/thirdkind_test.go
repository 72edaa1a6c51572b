package lifecycle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/settings"
)

// errRefused is the third kind's permanent error.
var errRefused = errors.New("refused")

// configMaps is a made-up third kind: ConfigMaps are "done" when
// data.done is "true", and attest to data.attest ("refused": a permanent
// error, "flaky": a transient one, else one entry at log index 7). It
// stands for the admission reconciler: nothing of the lifecycle is copied.
type configMaps struct {
	client  *fake.Clientset
	indexer cache.Indexer
}

func (k *configMaps) Name() string      { return "configmap" }
func (k *configMaps) Finalizer() string { return "stepseal.dev/configmap" }
func (k *configMaps) Get(ns, name string) (*corev1.ConfigMap, error) {
	return corelisters.NewConfigMapLister(k.indexer).ConfigMaps(ns).Get(name)
}
func (k *configMaps) List() ([]*corev1.ConfigMap, error) {
	return corelisters.NewConfigMapLister(k.indexer).List(labels.Everything())
}
func (k *configMaps) Patch(ctx context.Context, cm *corev1.ConfigMap, patch []byte) (*corev1.ConfigMap, error) {
	got, err := k.client.CoreV1().ConfigMaps(cm.Namespace).Patch(ctx, cm.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err == nil {
		err = k.indexer.Update(got)
	}
	return got, err
}
func (k *configMaps) IsDone(cm *corev1.ConfigMap) bool           { return cm.Data["done"] == "true" }
func (k *configMaps) CompletedAt(cm *corev1.ConfigMap) time.Time { return time.Time{} }
func (k *configMaps) Permanent(err error) bool                   { return errors.Is(err, errRefused) }
func (k *configMaps) Attest(ctx context.Context, cm *corev1.ConfigMap, cfg *settings.Config) (int, string, error) {
	switch cm.Data["attest"] {
	case "refused":
		return 0, "", errRefused
	case "flaky":
		return 0, "", errors.New("try again")
	}
	return 1, "7", nil
}

// A kind the lifecycle has never heard of gets the whole lifecycle:
// finalizer while running, signed with its log index once done, given up
// at once on a permanent error, retried on a transient one; not signed
// at all, only requeued, while the only stepseal-config seen was refused.
func TestLifecycleThirdKind(t *testing.T) {
	for _, tc := range []struct {
		name        string
		data        map[string]string
		requeue     bool
		want        map[string]string
		wantHeld    bool
		wantWarning bool
		badConfig   bool
	}{
		{"running: held", map[string]string{}, false, map[string]string{}, true, false, false},
		{"done: signed", map[string]string{"done": "true"}, false, map[string]string{annotations.Signed: "true", annotations.LogIndex: "7"}, false, false, false},
		{"refused: given up at once", map[string]string{"done": "true", "attest": "refused"}, false,
			map[string]string{annotations.Signed: "failed", annotations.Error: "refused", annotations.Retries: "1"}, false, true, false},
		{"flaky: retried", map[string]string{"done": "true", "attest": "flaky"}, true, map[string]string{}, true, false, false},
		{"config refused: not signed with the defaults", map[string]string{"done": "true"}, true, map[string]string{}, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "ns"}, Data: tc.data}
			k := &configMaps{client: fake.NewSimpleClientset(cm), indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})}
			if err := k.indexer.Add(cm); err != nil {
				t.Fatal(err)
			}
			cfg := settings.NewStore(zap.NewNop().Sugar(), nil)
			data := map[string]string{settings.KeyMaxRetries: "3", settings.KeyRetryBaseDelay: "1ms"}
			if tc.badConfig {
				data[settings.KeyPostgresLogURL] = "not a URL"
			}
			cfg.OnConfigChanged(&corev1.ConfigMap{Data: data})
			recorder := record.NewFakeRecorder(10)
			r := &lifecycle.Reconciler[*corev1.ConfigMap]{Kind: k, Config: cfg, Recorder: recorder}
			if err := r.Promote(reconciler.UniversalBucket(), nil); err != nil {
				t.Fatal(err)
			}
			if !r.NeedsWork(cm) || r.NeedsWork(&corev1.Secret{}) {
				t.Error("NeedsWork")
			}
			err := r.Reconcile(logging.WithLogger(context.Background(), zap.NewNop().Sugar()), "ns/cm")
			if requeue := err != nil; requeue != tc.requeue {
				t.Fatalf("err %v, want a requeue: %v", err, tc.requeue)
			}
			if wait, d := controller.IsRequeueKey(err); tc.badConfig && (!wait || d < 10*time.Second) {
				t.Errorf("err %v: want a requeue after 10 s or more, waiting for a valid stepseal-config", err)
			}
			got, err := k.client.CoreV1().ConfigMaps("ns").Get(context.Background(), "cm", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if a := stepsealAnnotations(got); len(a) != len(tc.want) {
				t.Errorf("annotations %v, want %v", a, tc.want)
			}
			for key, v := range tc.want {
				if got.Annotations[key] != v {
					t.Errorf("%s = %q, want %q", key, got.Annotations[key], v)
				}
			}
			if held := lifecycle.HasFinalizer(got, k.Finalizer()); held != tc.wantHeld {
				t.Errorf("finalizers %v, want held: %v", got.Finalizers, tc.wantHeld)
			}
			if warned := len(recorder.Events) == 1; warned != tc.wantWarning {
				t.Errorf("%d Events, want a Warning: %v", len(recorder.Events), tc.wantWarning)
			}
		})
	}
}

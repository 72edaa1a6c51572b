package taskrun

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	fakepipeline "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

const systemNS = "stepseal"

// signingSecret makes a cosign-encrypted ECDSA key (cosign's default) in a
// Secret shaped like Chains' signing-secrets.
func signingSecret(t testing.TB, name, password string) (*corev1.Secret, crypto.PublicKey) {
	t.Helper()
	key, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := signing.MarshalPrivateKeyPEM(key, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: systemNS, ResourceVersion: "1"},
		Data:       map[string][]byte{SecretKeyCosignKey: pemBytes, SecretKeyCosignPassword: []byte(password)},
	}, key.Public()
}

// flakyStore fails its first failures Puts, then delegates.
type flakyStore struct {
	store.Store
	failures atomic.Int32
}

func (f *flakyStore) Put(ctx context.Context, e store.Entry) (string, error) {
	if f.failures.Add(-1) >= 0 {
		return "", errors.New("connection refused")
	}
	return f.Store.Put(ctx, e)
}

type fixture struct {
	t        *testing.T
	client   *fakepipeline.Clientset
	indexer  cache.Indexer
	r        *Reconciler
	store    *flakyStore
	recorder *record.FakeRecorder
	pub      crypto.PublicKey
	metrics  *sdkmetric.ManualReader
}

func newFixture(t *testing.T, cfg map[string]string, trs ...*v1.TaskRun) *fixture {
	t.Helper()
	sec, pub := signingSecret(t, "signing-secrets", "pw")
	secrets := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := secrets.Add(sec); err != nil {
		t.Fatal(err)
	}
	ds, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		t:        t,
		client:   fakepipeline.NewSimpleClientset(),
		indexer:  cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		store:    &flakyStore{Store: ds},
		recorder: record.NewFakeRecorder(100),
		pub:      pub,
	}
	for _, tr := range trs {
		if _, err := f.client.TektonV1().TaskRuns(tr.Namespace).Create(context.Background(), tr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.sync()
	cs := settings.NewStore(zap.NewNop().Sugar(), nil)
	cs.OnConfigChanged(&corev1.ConfigMap{Data: cfg})
	f.metrics = sdkmetric.NewManualReader()
	mr, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.metrics)))
	if err != nil {
		t.Fatal(err)
	}
	shared := NewShared()
	t.Cleanup(func() {
		if err := shared.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	f.r = &Reconciler{
		Metrics:         mr,
		Tekton:          f.client,
		Lister:          listers.NewTaskRunLister(f.indexer),
		Secrets:         corelisters.NewSecretLister(secrets),
		SystemNamespace: systemNS,
		Config:          cs,
		Recorder:        f.recorder,
		Shared:          shared,
		OpenBackends: func(*settings.Config) ([]Backend, error) {
			return []Backend{{Name: "test", Store: f.store}}, nil
		},
	}
	if err := f.r.Promote(reconciler.UniversalBucket(), nil); err != nil { // the only replica
		t.Fatal(err)
	}
	return f
}

// metric returns the value of a counter (or a histogram's count) for
// TaskRuns.
func (f *fixture) metric(name string) int64 {
	f.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.metrics.Collect(context.Background(), &rm); err != nil {
		f.t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					if v, _ := dp.Attributes.Value("kind"); v.AsString() == metrics.KindTaskRun {
						return dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					if v, _ := dp.Attributes.Value("kind"); v.AsString() == metrics.KindTaskRun {
						return int64(dp.Count)
					}
				}
			}
		}
	}
	return 0
}

// sync copies the fake API's TaskRuns into the lister, as the informer would.
func (f *fixture) sync() {
	list, err := f.client.TektonV1().TaskRuns("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range list.Items {
		if err := f.indexer.Update(&list.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) reconcile(tr *v1.TaskRun) error {
	f.t.Helper()
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	err := f.r.Reconcile(ctx, tr.Namespace+"/"+tr.Name)
	f.sync()
	return err
}

func (f *fixture) get(tr *v1.TaskRun) *v1.TaskRun {
	f.t.Helper()
	got, err := f.client.TektonV1().TaskRuns(tr.Namespace).Get(context.Background(), tr.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f *fixture) entries(kind string) []store.Entry {
	f.t.Helper()
	es, err := f.store.List(context.Background(), store.Filter{Kind: kind})
	if err != nil {
		f.t.Fatal(err)
	}
	return es
}

// verifyStored checks every stored link and provenance against pub, and
// that there is exactly one link per step name in wantSteps.
func verifyStored(t *testing.T, s store.Store, pub crypto.PublicKey, runID string, wantSteps []string, wantProvenance int) {
	t.Helper()
	ctx := context.Background()
	key, err := signing.InTotoKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	links, err := s.List(ctx, store.Filter{Kind: store.KindLink, RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	perStep := map[string]int{}
	for _, e := range links {
		var mb in_toto.Metablock
		if err := json.Unmarshal(e.Data, &mb); err != nil {
			t.Fatalf("link %s: %v", e.Name, err)
		}
		if err := mb.VerifySignature(key); err != nil {
			t.Errorf("link %s: signature: %v", e.Name, err)
		}
		signed, _ := json.Marshal(mb.Signed)
		var l in_toto.Link
		if err := json.Unmarshal(signed, &l); err != nil || l.Type != "link" {
			t.Fatalf("link %s: signed is not a link: %v", e.Name, err)
		}
		perStep[l.Name]++
	}
	for _, s := range wantSteps {
		if perStep[s] != 1 {
			t.Errorf("step %s: %d links stored, want exactly 1 (all: %v)", s, perStep[s], perStep)
		}
	}
	if len(perStep) != len(wantSteps) {
		t.Errorf("links for steps %v, want %v", perStep, wantSteps)
	}
	provs, err := s.List(ctx, store.Filter{Kind: store.KindProvenance, RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	if len(provs) != wantProvenance {
		t.Errorf("%d provenance entries, want %d", len(provs), wantProvenance)
	}
	v, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range provs {
		var env dsse.Envelope
		if err := json.Unmarshal(e.Data, &env); err != nil {
			t.Fatal(err)
		}
		if _, err := signing.VerifyEnvelope(ctx, &env, 1, v); err != nil {
			t.Errorf("provenance %s: %v", e.Name, err)
		}
	}
}

var buildPushSteps = []string{"build.prepare", "build.build-and-push", "build.write-url"}

const buildPushRun = "5d0b7a11-93c4-4f0e-8a0e-6a2b4e8f2c77"

func TestReconcileSignsOnceAndAnnotates(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	f := newFixture(t, nil, tr)
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	got := f.get(tr)
	if got.Annotations[AnnotationSigned] != "true" || hasFinalizer(got) {
		t.Fatalf("annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
	verifyStored(t, f.store, f.pub, buildPushRun, buildPushSteps, 1)
	// The image digest is a product of build-and-push (its step artifact),
	// of write-url (the IMAGE_URL/IMAGE_DIGEST results) and the provenance subject.
	if es, err := f.store.Get(context.Background(), "sha256:"+appDigest); err != nil || len(es) != 3 {
		t.Errorf("entries about the image: %d, %v (want 2 links and the provenance)", len(es), err)
	}
	// A signed TaskRun is left alone.
	if NeedsWork(got) {
		t.Error("NeedsWork(signed TaskRun)")
	}
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	verifyStored(t, f.store, f.pub, buildPushRun, buildPushSteps, 1)
}

func TestReconcileResumesWithoutDuplicates(t *testing.T) {
	// An earlier process stored everything, then died before annotating:
	// the TaskRun still carries the finalizer and no annotation.
	tr := loadTaskRun(t, "build-push.json")
	f := newFixture(t, nil, tr)
	if _, _, err := f.r.attestAndStore(context.Background(), tr, settings.Defaults()); err != nil {
		t.Fatal(err)
	}
	before := len(f.entries(""))
	tr.Finalizers = []string{Finalizer}
	if _, err := f.client.TektonV1().TaskRuns(tr.Namespace).Update(context.Background(), tr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if after := len(f.entries("")); after != before {
		t.Errorf("%d entries after resuming, want the %d stored before (ECDSA re-signing must not add copies)", after, before)
	}
	if got := f.get(tr); got.Annotations[AnnotationSigned] != "true" || hasFinalizer(got) {
		t.Fatalf("annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
	verifyStored(t, f.store, f.pub, buildPushRun, buildPushSteps, 1)
}

func TestReconcileRetriesThenSigns(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	f := newFixture(t, map[string]string{settings.KeyMaxRetries: "5", settings.KeyRetryBaseDelay: "10ms"}, tr)
	f.store.failures.Store(1 << 20) // the backend is down for two attempts
	for i, want := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond} {
		err := f.reconcile(tr)
		if ok, d := controller.IsRequeueKey(err); !ok || d != want {
			t.Fatalf("attempt %d: err %v, want a requeue after %v", i+1, err, want)
		}
		got := f.get(tr)
		if _, ok := got.Annotations[AnnotationSigned]; ok {
			t.Fatalf("attempt %d: annotated %v while the backend refused", i+1, got.Annotations)
		}
		if !hasFinalizer(got) {
			t.Fatalf("attempt %d: no finalizer while unsigned", i+1)
		}
	}
	f.store.failures.Store(0) // back up
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); got.Annotations[AnnotationSigned] != "true" || hasFinalizer(got) {
		t.Fatalf("annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
	verifyStored(t, f.store, f.pub, buildPushRun, buildPushSteps, 1)
	for name, want := range map[string]int64{metrics.NameRetries: 2, metrics.NameSigned: 1, metrics.NameLatency: 1, metrics.NameFailed: 0} {
		if got := f.metric(name); got != want {
			t.Errorf("metric %s = %d, want %d", name, got, want)
		}
	}
}

func TestReconcileGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tr        *v1.TaskRun
		setup     func(f *fixture)
		attempts  int
		wantError string
	}{{
		name:      "backend never accepts",
		tr:        minimal(nil),
		setup:     func(f *fixture) { f.store.failures.Store(1000) },
		attempts:  3,
		wantError: "backend test: storing link tr.s",
	}, {
		name: "wrong password",
		tr:   minimal(nil),
		setup: func(f *fixture) {
			sec, _ := signingSecret(t, "signing-secrets", "right")
			sec.Data[SecretKeyCosignPassword] = []byte("wrong")
			sec.ResourceVersion = "2"
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			_ = idx.Add(sec)
			f.r.Secrets = corelisters.NewSecretLister(idx)
		},
		attempts:  3,
		wantError: "signing Secret stepseal/signing-secrets",
	}, {
		name: "missing Secret",
		tr:   minimal(nil),
		setup: func(f *fixture) {
			f.r.Secrets = corelisters.NewSecretLister(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}))
		},
		attempts:  3,
		wantError: `"signing-secrets" not found`,
	}, {
		name: "no step ran: at once",
		tr: minimal(func(tr *v1.TaskRun) {
			tr.Status.Conditions[0].Status = corev1.ConditionFalse
			tr.Status.Steps = nil
		}),
		attempts:  1,
		wantError: "nothing to attest",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, map[string]string{settings.KeyMaxRetries: "3", settings.KeyRetryBaseDelay: "1ms"}, tc.tr)
			if tc.setup != nil {
				tc.setup(f)
			}
			for i := 1; i < tc.attempts; i++ {
				if ok, _ := controller.IsRequeueKey(f.reconcile(tc.tr)); !ok {
					t.Fatalf("attempt %d was not requeued", i)
				}
			}
			if err := f.reconcile(tc.tr); err != nil {
				t.Fatalf("last attempt: %v", err)
			}
			got := f.get(tc.tr)
			a := got.Annotations
			if a[AnnotationSigned] != "failed" || !strings.Contains(a[AnnotationError], tc.wantError) || a[AnnotationRetries] != itoa(tc.attempts) {
				t.Errorf("annotations %v, want failed, error with %q, retries %d", a, tc.wantError, tc.attempts)
			}
			if hasFinalizer(got) {
				t.Error("finalizer kept on a failed TaskRun")
			}
			if strings.Contains(a[AnnotationError], "PRIVATE KEY") {
				t.Error("key material in the error annotation")
			}
			if f.metric(metrics.NameFailed) != 1 || f.metric(metrics.NameRetries) != int64(tc.attempts-1) || f.metric(metrics.NameSigned) != 0 {
				t.Errorf("metrics failed=%d retries=%d signed=%d, want 1, %d, 0",
					f.metric(metrics.NameFailed), f.metric(metrics.NameRetries), f.metric(metrics.NameSigned), tc.attempts-1)
			}
			select {
			case e := <-f.recorder.Events:
				if !strings.HasPrefix(e, "Warning SigningFailed") {
					t.Errorf("event %q", e)
				}
			default:
				t.Error("no Warning Event")
			}
			if n := len(f.entries(store.KindLink)); tc.name != "backend never accepts" && n != 0 {
				t.Errorf("%d links stored for a failed TaskRun", n)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestReconcileDeletedRightAfterFinishing(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	now := metav1.Now()
	tr.DeletionTimestamp = &now
	tr.Finalizers = []string{Finalizer}
	f := newFixture(t, nil, tr)
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); hasFinalizer(got) || got.Annotations[AnnotationSigned] != "true" {
		t.Fatalf("annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
	verifyStored(t, f.store, f.pub, buildPushRun, buildPushSteps, 1)
}

func TestReconcileLeavesOthersAlone(t *testing.T) {
	running := minimal(func(tr *v1.TaskRun) { tr.Status.Conditions[0].Status = corev1.ConditionUnknown })
	signedWithFinalizer := minimal(func(tr *v1.TaskRun) {
		tr.Name = "done"
		tr.Annotations = map[string]string{AnnotationSigned: "true"}
		tr.Finalizers = []string{"other", Finalizer}
	})
	f := newFixture(t, nil, running, signedWithFinalizer)
	for _, tr := range []*v1.TaskRun{running, signedWithFinalizer} {
		if err := f.reconcile(tr); err != nil {
			t.Fatal(err)
		}
	}
	// A running TaskRun only gets the finalizer (so it is held once it
	// finishes, however long the queue); nothing is signed yet.
	got := f.get(running)
	if len(got.Annotations) != 0 || !hasFinalizer(got) {
		t.Errorf("running TaskRun: annotations %v finalizers %v, want the finalizer only", got.Annotations, got.Finalizers)
	}
	// Deleted before it finished: the finalizer goes, nothing is signed.
	now := metav1.Now()
	got.DeletionTimestamp = &now
	if err := f.indexer.Update(got); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.TektonV1().TaskRuns(got.Namespace).Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.reconcile(got); err != nil {
		t.Fatal(err)
	}
	if got := f.get(running); len(got.Annotations) != 0 || hasFinalizer(got) {
		t.Errorf("running TaskRun deleted: annotations %v finalizers %v, want neither", got.Annotations, got.Finalizers)
	}
	if got := f.get(signedWithFinalizer); len(got.Finalizers) != 1 || got.Finalizers[0] != "other" {
		t.Errorf("finalizers of a signed TaskRun: %v, want only the other controller's", got.Finalizers)
	}
	if n := len(f.entries("")); n != 0 {
		t.Errorf("%d entries stored", n)
	}
	if err := f.r.Reconcile(context.Background(), "ns/gone"); err != nil {
		t.Errorf("reconciling a deleted TaskRun: %v", err)
	}
}

func TestNeedsWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  any
		want bool
	}{
		{"not a TaskRun", &corev1.Pod{}, false},
		{"running (gets the finalizer)", minimal(func(tr *v1.TaskRun) { tr.Status.Conditions[0].Status = corev1.ConditionUnknown }), true},
		{"finished", minimal(nil), true},
		{"failed TaskRun", minimal(func(tr *v1.TaskRun) { tr.Status.Conditions[0].Status = corev1.ConditionFalse }), true},
		{"signed", minimal(func(tr *v1.TaskRun) { tr.Annotations = map[string]string{AnnotationSigned: "true"} }), false},
		{"given up", minimal(func(tr *v1.TaskRun) { tr.Annotations = map[string]string{AnnotationSigned: "failed"} }), false},
		{"signed, finalizer left", minimal(func(tr *v1.TaskRun) {
			tr.Annotations = map[string]string{AnnotationSigned: "true"}
			tr.Finalizers = []string{Finalizer}
		}), true},
	} {
		if got := NeedsWork(tc.obj); got != tc.want {
			t.Errorf("%s: NeedsWork = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// bucketOf leads exactly one key.
type bucketOf struct{ key types.NamespacedName }

func (b bucketOf) Name() string                     { return "only-" + b.key.Name }
func (b bucketOf) Has(nn types.NamespacedName) bool { return nn == b.key }

// A replica signs only TaskRuns of buckets it leads, enqueues them when
// promoted, and stops when demoted.
func TestReconcileOnlyAsLeader(t *testing.T) {
	tr := loadTaskRun(t, "build-push.json")
	f := newFixture(t, nil, tr)
	f.r.Demote(reconciler.UniversalBucket())
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); len(got.Annotations) != 0 || hasFinalizer(got) || len(f.entries("")) != 0 {
		t.Fatalf("a replica leading no bucket touched the TaskRun: annotations %v finalizers %v, %d entries", got.Annotations, got.Finalizers, len(f.entries("")))
	}
	other := bucketOf{types.NamespacedName{Namespace: tr.Namespace, Name: "someone-else"}}
	if err := f.r.Promote(other, func(reconciler.Bucket, types.NamespacedName) { t.Error("enqueued a key of another bucket") }); err != nil {
		t.Fatal(err)
	}
	if err := f.reconcile(tr); err != nil || len(f.entries("")) != 0 {
		t.Fatalf("signed a TaskRun of a bucket it does not lead (err %v)", err)
	}
	mine := bucketOf{types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}}
	var enqueued []types.NamespacedName
	if err := f.r.Promote(mine, func(_ reconciler.Bucket, nn types.NamespacedName) { enqueued = append(enqueued, nn) }); err != nil {
		t.Fatal(err)
	}
	if len(enqueued) != 1 || enqueued[0] != mine.key {
		t.Errorf("promotion enqueued %v, want the unsigned TaskRun", enqueued)
	}
	if err := f.reconcile(tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(tr); got.Annotations[AnnotationSigned] != "true" {
		t.Errorf("leader did not sign: %v", got.Annotations)
	}
}

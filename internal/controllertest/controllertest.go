package controllertest

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"os"
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
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

// SystemNamespace is the controller's namespace in fixtures.
const SystemNamespace = "stepseal"

// SigningSecret makes a cosign-encrypted ECDSA key (cosign's default) in a
// Secret shaped like Chains' signing-secrets, in SystemNamespace.
func SigningSecret(t testing.TB, name, password string) (*corev1.Secret, crypto.PublicKey) {
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
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: SystemNamespace, ResourceVersion: "1"},
		Data:       map[string][]byte{lifecycle.SecretKeyCosignKey: pemBytes, lifecycle.SecretKeyCosignPassword: []byte(password)},
	}, key.Public()
}

// SecretLister lists secrets.
func SecretLister(t testing.TB, secrets ...*corev1.Secret) corelisters.SecretLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, s := range secrets {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	return corelisters.NewSecretLister(idx)
}

// FlakyStore fails its first Failures Puts, then delegates.
type FlakyStore struct {
	store.Store
	Failures atomic.Int32
}

// Put implements store.Store.
func (f *FlakyStore) Put(ctx context.Context, e store.Entry) (string, error) {
	if f.Failures.Add(-1) >= 0 {
		return "", errors.New("connection refused")
	}
	return f.Store.Put(ctx, e)
}

// Fixture is what a reconciler test runs against: a fake Tekton clientset,
// listers fed from it (Sync), a signing Secret "signing-secrets" (password
// "pw") in SystemNamespace, a directory store behind a FlakyStore as the
// one backend "test", the stepseal-config of the test, metrics and an Event
// recorder.
type Fixture struct {
	t        *testing.T
	Client   *fakepipeline.Clientset
	TaskRuns cache.Indexer
	// PipelineRuns is the PipelineRun lister's indexer.
	PipelineRuns cache.Indexer
	Store        *FlakyStore
	Recorder     *record.FakeRecorder
	// Pub is the signing Secret's public key.
	Pub     crypto.PublicKey
	Config  *settings.Store
	Metrics *metrics.Recorder
	// Signing resolves the Secret and opens Store (OpenBackends); tests
	// change its fields to change either.
	Signing *lifecycle.Signing

	reader *sdkmetric.ManualReader
}

// New returns a Fixture whose stepseal-config is cfg, holding objs
// (*v1.TaskRun and *v1.PipelineRun) in the API and the listers.
func New(t *testing.T, cfg map[string]string, objs ...metav1.Object) *Fixture {
	t.Helper()
	sec, pub := SigningSecret(t, "signing-secrets", "pw")
	ds, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &Fixture{
		t:            t,
		Client:       fakepipeline.NewSimpleClientset(),
		TaskRuns:     cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		PipelineRuns: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		Store:        &FlakyStore{Store: ds},
		Recorder:     record.NewFakeRecorder(100),
		Pub:          pub,
		reader:       sdkmetric.NewManualReader(),
	}
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.TaskRun:
			_, err = f.Client.TektonV1().TaskRuns(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *v1.PipelineRun:
			_, err = f.Client.TektonV1().PipelineRuns(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("controllertest: %T is not a TaskRun or PipelineRun", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f.Sync()
	f.Config = settings.NewStore(zap.NewNop().Sugar(), nil)
	f.Config.OnConfigChanged(&corev1.ConfigMap{Data: cfg})
	if f.Metrics, err = metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))); err != nil {
		t.Fatal(err)
	}
	shared := lifecycle.NewShared()
	t.Cleanup(func() {
		if err := shared.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	f.Signing = &lifecycle.Signing{
		Secrets:         SecretLister(t, sec),
		SystemNamespace: SystemNamespace,
		Shared:          shared,
		OpenBackends: func(*settings.Config) ([]lifecycle.Backend, error) {
			return []lifecycle.Backend{{Name: "test", Store: f.Store}}, nil
		},
	}
	return f
}

// TaskRunLister lists the fixture's TaskRuns as of the last Sync.
func (f *Fixture) TaskRunLister() listers.TaskRunLister { return listers.NewTaskRunLister(f.TaskRuns) }

// PipelineRunLister lists the fixture's PipelineRuns as of the last Sync.
func (f *Fixture) PipelineRunLister() listers.PipelineRunLister {
	return listers.NewPipelineRunLister(f.PipelineRuns)
}

// Sync copies the fake API's TaskRuns and PipelineRuns into the listers, as
// the informers would.
func (f *Fixture) Sync() {
	ctx := context.Background()
	trs, err := f.Client.TektonV1().TaskRuns("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range trs.Items {
		if err := f.TaskRuns.Update(&trs.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
	prs, err := f.Client.TektonV1().PipelineRuns("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range prs.Items {
		if err := f.PipelineRuns.Update(&prs.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
}

// Reconcile reconciles obj's key with r, then Syncs.
func (f *Fixture) Reconcile(r controller.Reconciler, obj metav1.Object) error {
	f.t.Helper()
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	err := r.Reconcile(ctx, obj.GetNamespace()+"/"+obj.GetName())
	f.Sync()
	return err
}

// TaskRun returns tr as the API holds it now.
func (f *Fixture) TaskRun(tr *v1.TaskRun) *v1.TaskRun {
	f.t.Helper()
	got, err := f.Client.TektonV1().TaskRuns(tr.Namespace).Get(context.Background(), tr.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

// PipelineRun returns pr as the API holds it now.
func (f *Fixture) PipelineRun(pr *v1.PipelineRun) *v1.PipelineRun {
	f.t.Helper()
	got, err := f.Client.TektonV1().PipelineRuns(pr.Namespace).Get(context.Background(), pr.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

// Entries lists the stored entries of kind ("": all).
func (f *Fixture) Entries(kind string) []store.Entry {
	f.t.Helper()
	es, err := f.Store.List(context.Background(), store.Filter{Kind: kind})
	if err != nil {
		f.t.Fatal(err)
	}
	return es
}

// Metric returns the value of a counter (or a histogram's count) for runs
// of kind (metrics.KindTaskRun, metrics.KindPipelineRun).
func (f *Fixture) Metric(name, kind string) int64 {
	f.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
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
					if v, _ := dp.Attributes.Value("kind"); v.AsString() == kind {
						return dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					if v, _ := dp.Attributes.Value("kind"); v.AsString() == kind {
						return int64(dp.Count)
					}
				}
			}
		}
	}
	return 0
}

// Events drains the Events recorded so far.
func (f *Fixture) Events() []string {
	var out []string
	for {
		select {
		case e := <-f.Recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// VerifyStored checks every stored link and provenance of runID against
// pub, that there is exactly one link per step name in wantSteps and
// nothing else, and wantProvenance provenances.
func VerifyStored(t testing.TB, s store.Store, pub crypto.PublicKey, runID string, wantSteps []string, wantProvenance int) {
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

// Testdata TaskRuns of controllers/taskrun/testdata.
const (
	// BuildPushRun is the run ID (the TaskRun's UID) of build-push.json.
	BuildPushRun = "5d0b7a11-93c4-4f0e-8a0e-6a2b4e8f2c77"
	// AppDigest is the image build-push.json pushes (hex of its sha256).
	AppDigest = "a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3"
	// DigestA is the image ID of Minimal's step.
	DigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

// BuildPushSteps are the steps of build-push.json as links name them.
var BuildPushSteps = []string{"build.prepare", "build.build-and-push", "build.write-url"}

// LoadTaskRun reads a TaskRun from a JSON file (a path, e.g.
// "testdata/build-push.json" in controllers/taskrun).
func LoadTaskRun(t testing.TB, path string) *v1.TaskRun {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr := &v1.TaskRun{}
	if err := json.Unmarshal(b, tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// Minimal is a finished lone TaskRun ns/tr with one terminated step "s",
// changed by mut (when not nil).
func Minimal(mut func(*v1.TaskRun)) *v1.TaskRun {
	ts := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "tr", Namespace: "ns", UID: "uid-1"},
		Spec:       v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "t"}},
		Status: v1.TaskRunStatus{
			Status: duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue}}},
			TaskRunStatusFields: v1.TaskRunStatusFields{
				StartTime:      &metav1.Time{Time: ts("2026-01-01T00:00:00Z")},
				CompletionTime: &metav1.Time{Time: ts("2026-01-01T00:01:00Z")},
				Steps: []v1.StepState{{
					Name:    "s",
					ImageID: "docker.io/library/alpine@" + DigestA,
					ContainerState: corev1.ContainerState{
						Terminated: &corev1.ContainerStateTerminated{
							ExitCode:   0,
							StartedAt:  metav1.NewTime(ts("2026-01-01T00:00:01Z")),
							FinishedAt: metav1.NewTime(ts("2026-01-01T00:00:02Z")),
						},
					},
				}},
				TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "alpine:3", Command: []string{"true"}}}},
			},
		},
	}
	if mut != nil {
		mut(tr)
	}
	return tr
}

// NewShared is a lifecycle.Shared closed when the test ends: after the
// controllers RunControllers started later have stopped (cleanups run last
// first), and before the test's directories are removed, so no store's
// background work (a transparency log's checkpointer) writes into a
// directory being deleted.
func NewShared(t testing.TB) *lifecycle.Shared {
	t.Helper()
	s := lifecycle.NewShared()
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("closing the controllers' stores: %v", err)
		}
	})
	return s
}

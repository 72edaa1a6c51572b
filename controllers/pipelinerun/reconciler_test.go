package pipelinerun

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	fakepipeline "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
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
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/store/dirstore"
)

const systemNS = "stepseal"

func signingSecret(t testing.TB, ns string) (*corev1.Secret, crypto.PublicKey) {
	t.Helper()
	key, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := signing.MarshalPrivateKeyPEM(key, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "signing-secrets", Namespace: ns, ResourceVersion: "1"},
		Data:       map[string][]byte{taskrun.SecretKeyCosignKey: pemBytes, taskrun.SecretKeyCosignPassword: []byte("pw")},
	}, key.Public()
}

type fixture struct {
	t        *testing.T
	client   *fakepipeline.Clientset
	prs, trs cache.Indexer
	store    *dirstore.Store
	tr       *taskrun.Reconciler
	r        *Reconciler
	recorder *record.FakeRecorder
	pub      crypto.PublicKey
	metrics  *sdkmetric.ManualReader
}

// pipelineRun returns a finished PipelineRun with a child TaskRun per task
// (finished, not yet signed), each with IMAGE_URL/IMAGE_DIGEST results.
func pipelineRun(t *testing.T, tasks ...string) (*v1.PipelineRun, []*v1.TaskRun) {
	t.Helper()
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: "team", UID: "7c0d6a5e-0000-4000-8000-000000000001"},
		Spec:       v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{}},
	}
	var trs []*v1.TaskRun
	for i, task := range tasks {
		pr.Spec.PipelineSpec.Tasks = append(pr.Spec.PipelineSpec.Tasks, v1.PipelineTask{Name: task})
		tr := kubetest.ChildTaskRun(pr, task, &v1.TaskSpec{Steps: []v1.Step{{Name: "a", Image: "alpine:3"}, {Name: "b", Image: "golang:1.26"}}})
		tr.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1))
		st, err := kubetest.FinishedStatus(tr, kubetest.FinishOptions{Results: []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("registry.example.com/" + task)},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(fmt.Sprintf("sha256:%064x", i+1))},
		}})
		if err != nil {
			t.Fatal(err)
		}
		tr.Status = *st
		trs = append(trs, tr)
	}
	st, err := kubetest.FinishedPipelineStatus(pr, kubetest.PipelineFinishOptions{TaskRuns: trs})
	if err != nil {
		t.Fatal(err)
	}
	pr.Status = *st
	return pr, trs
}

func newFixture(t *testing.T, pr *v1.PipelineRun, trs []*v1.TaskRun) *fixture {
	t.Helper()
	sec, pub := signingSecret(t, systemNS)
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
		prs:      cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		trs:      cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		store:    ds,
		recorder: record.NewFakeRecorder(100),
		pub:      pub,
		metrics:  sdkmetric.NewManualReader(),
	}
	ctx := context.Background()
	if _, err := f.client.TektonV1().PipelineRuns(pr.Namespace).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		if _, err := f.client.TektonV1().TaskRuns(tr.Namespace).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.sync()
	cs := settings.NewStore(zap.NewNop().Sugar(), nil)
	cs.OnConfigChanged(&corev1.ConfigMap{Data: map[string]string{settings.KeyMaxRetries: "3", settings.KeyRetryBaseDelay: "1ms"}})
	mr, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.metrics)))
	if err != nil {
		t.Fatal(err)
	}
	f.tr = &taskrun.Reconciler{
		Tekton: f.client, Lister: listers.NewTaskRunLister(f.trs), Secrets: corelisters.NewSecretLister(secrets),
		SystemNamespace: systemNS, Config: cs, Recorder: f.recorder, Shared: taskrun.NewShared(),
		OpenBackends: func(*settings.Config) ([]taskrun.Backend, error) {
			return []taskrun.Backend{{Name: "test", Store: ds}}, nil
		},
	}
	f.r = &Reconciler{
		Tekton: f.client, Lister: listers.NewPipelineRunLister(f.prs), TaskRuns: listers.NewTaskRunLister(f.trs),
		Config: cs, Recorder: f.recorder, Signer: f.tr.Signer, Backends: f.tr.Backends, Metrics: mr,
		WaitDelay: 42 * time.Millisecond,
	}
	for _, la := range []reconciler.LeaderAware{f.tr, f.r} { // the only replica
		if err := la.Promote(reconciler.UniversalBucket(), nil); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) sync() {
	ctx := context.Background()
	trs, err := f.client.TektonV1().TaskRuns("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range trs.Items {
		if err := f.trs.Update(&trs.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
	prs, err := f.client.TektonV1().PipelineRuns("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range prs.Items {
		if err := f.prs.Update(&prs.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) reconcile(pr *v1.PipelineRun) error {
	f.t.Helper()
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	err := f.r.Reconcile(ctx, pr.Namespace+"/"+pr.Name)
	f.sync()
	return err
}

func (f *fixture) signChildren(trs []*v1.TaskRun) {
	f.t.Helper()
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	for _, tr := range trs {
		if err := f.tr.Reconcile(ctx, tr.Namespace+"/"+tr.Name); err != nil {
			f.t.Fatal(err)
		}
		f.sync()
	}
}

func (f *fixture) get(pr *v1.PipelineRun) *v1.PipelineRun {
	f.t.Helper()
	got, err := f.client.TektonV1().PipelineRuns(pr.Namespace).Get(context.Background(), pr.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f *fixture) metric(name string) int64 {
	f.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.metrics.Collect(context.Background(), &rm); err != nil {
		f.t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range s.DataPoints {
					if v, _ := dp.Attributes.Value("kind"); v.AsString() == metrics.KindPipelineRun {
						return dp.Value
					}
				}
			}
		}
	}
	return 0
}

// runProvenance returns the verified PipelineRun provenance in s, which must
// hold exactly one.
func runProvenance(t *testing.T, s store.Store, pub crypto.PublicKey, pr *v1.PipelineRun) *provenance.Provenance {
	t.Helper()
	ctx := context.Background()
	es, err := s.List(ctx, store.Filter{Kind: store.KindProvenance, RunID: string(pr.UID)})
	if err != nil {
		t.Fatal(err)
	}
	var mine []store.Entry
	for _, e := range es {
		if strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
			mine = append(mine, e)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d PipelineRun provenance entries, want 1", len(mine))
	}
	var env dsse.Envelope
	if err := json.Unmarshal(mine[0].Data, &env); err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.VerifyEnvelope(ctx, &env, 1, v); err != nil {
		t.Fatalf("PipelineRun provenance: %v", err)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	st := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, st); err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != attest.PredicateSLSAProvenanceV1 {
		t.Errorf("predicateType %s", st.PredicateType)
	}
	b, _ := protojson.Marshal(st.Predicate)
	p := &provenance.Provenance{}
	if err := protojson.Unmarshal(b, p); err != nil {
		t.Fatal(err)
	}
	if p.BuildDefinition.BuildType != attest.BuildTypePipelineRun || p.RunDetails.Metadata.InvocationId != string(pr.UID) {
		t.Errorf("buildType %s invocationId %s", p.BuildDefinition.BuildType, p.RunDetails.Metadata.InvocationId)
	}
	return p
}

// checkNamesEveryChild asserts that p's byproducts name every link and every
// TaskRun provenance stored for the run, by the sha256 of the stored bytes.
func checkNamesEveryChild(t *testing.T, s store.Store, p *provenance.Provenance, pr *v1.PipelineRun, trs []*v1.TaskRun) {
	t.Helper()
	byName := map[string]*intoto.ResourceDescriptor{}
	for _, d := range p.RunDetails.Byproducts {
		byName[d.Name] = d
	}
	es, err := s.List(context.Background(), store.Filter{RunID: string(pr.UID)})
	if err != nil {
		t.Fatal(err)
	}
	links, provs := 0, 0
	for _, e := range es {
		if strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
			continue
		}
		d, ok := byName[e.Name]
		if !ok {
			t.Errorf("stored %s %s is not among the byproducts", e.Kind, e.Name)
			continue
		}
		if "sha256:"+d.Digest["sha256"] != store.Digest(e.Data) {
			t.Errorf("%s: byproduct digest %v, stored bytes %s", e.Name, d.Digest, store.Digest(e.Data))
		}
		switch e.Kind {
		case store.KindLink:
			links++
			if d.MediaType != attest.MediaTypeLink {
				t.Errorf("%s: mediaType %s", e.Name, d.MediaType)
			}
		case store.KindProvenance:
			provs++
			if d.MediaType != MediaTypeProvenance {
				t.Errorf("%s: mediaType %s", e.Name, d.MediaType)
			}
		}
	}
	if links != 2*len(trs) || provs != len(trs) {
		t.Errorf("byproducts name %d links and %d TaskRun provenances, want %d and %d", links, provs, 2*len(trs), len(trs))
	}
	if len(p.RunDetails.Byproducts) != links+provs {
		t.Errorf("%d byproducts, want %d", len(p.RunDetails.Byproducts), links+provs)
	}
}

func TestSignsOnceChildrenAreSigned(t *testing.T) {
	pr, trs := pipelineRun(t, "build", "test")
	f := newFixture(t, pr, trs)

	// Children not signed yet: wait, without counting an attempt.
	for range 2 {
		err := f.reconcile(pr)
		if ok, d := controller.IsRequeueKey(err); !ok || d != 42*time.Millisecond {
			t.Fatalf("err %v, want a requeue after the wait delay", err)
		}
	}
	if a := f.get(pr).Annotations; len(a) != 0 {
		t.Fatalf("annotated %v before the children were signed", a)
	}
	if !taskrun.HasFinalizer(f.get(pr), taskrun.PipelineRunFinalizer) {
		t.Fatal("a finished, unsigned PipelineRun is not held by the finalizer")
	}
	f.signChildren(trs[:1])
	if ok, _ := controller.IsRequeueKey(f.reconcile(pr)); !ok {
		t.Fatal("not waiting for the second child")
	}
	f.signChildren(trs[1:])
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	got := f.get(pr)
	if got.Annotations[taskrun.AnnotationSigned] != "true" || len(got.Finalizers) != 0 {
		t.Fatalf("annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
	p := runProvenance(t, f.store, f.pub, pr)
	checkNamesEveryChild(t, f.store, p, pr, trs)
	if n := len(p.BuildDefinition.InternalParameters.AsMap()["tasks"].([]any)); n != 2 {
		t.Errorf("%d tasks in internalParameters, want 2", n)
	}
	if f.metric(metrics.NameSigned) != 1 || f.metric(metrics.NameRetries) != 0 {
		t.Errorf("metrics signed=%d retries=%d, want 1 and 0", f.metric(metrics.NameSigned), f.metric(metrics.NameRetries))
	}
	if NeedsWork(got) {
		t.Error("NeedsWork(signed PipelineRun)")
	}
	// Signed: left alone, nothing stored again.
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	runProvenance(t, f.store, f.pub, pr)
}

func TestResumesWithoutDuplicate(t *testing.T) {
	pr, trs := pipelineRun(t, "build")
	f := newFixture(t, pr, trs)
	f.signChildren(trs)
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	before, _ := f.store.List(context.Background(), store.Filter{})
	// A process that stored the provenance and died before annotating.
	got := f.get(pr)
	got.Annotations = nil
	if _, err := f.client.TektonV1().PipelineRuns(pr.Namespace).Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.sync()
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	after, _ := f.store.List(context.Background(), store.Filter{})
	if len(after) != len(before) {
		t.Errorf("%d entries after resuming, want %d", len(after), len(before))
	}
	if f.get(pr).Annotations[taskrun.AnnotationSigned] != "true" {
		t.Error("not annotated after resuming")
	}
	runProvenance(t, f.store, f.pub, pr)
}

func TestChildFailedFailsPipelineRun(t *testing.T) {
	pr, trs := pipelineRun(t, "build", "test")
	trs[1].Annotations = map[string]string{taskrun.AnnotationSigned: "failed", taskrun.AnnotationError: "backend dir: disk full"}
	f := newFixture(t, pr, trs)
	f.signChildren(trs[:1])
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	a := f.get(pr).Annotations
	if a[taskrun.AnnotationSigned] != "failed" || !strings.Contains(a[taskrun.AnnotationError], "release-test") ||
		!strings.Contains(a[taskrun.AnnotationError], "disk full") || a[taskrun.AnnotationRetries] != "1" {
		t.Errorf("annotations %v, want failed naming release-test and its error", a)
	}
	select {
	case e := <-f.recorder.Events:
		if !strings.HasPrefix(e, "Warning SigningFailed") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no Warning Event")
	}
	es, _ := f.store.List(context.Background(), store.Filter{Kind: store.KindProvenance})
	for _, e := range es {
		if strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
			t.Errorf("PipelineRun provenance %s stored for a failed run", e.Name)
		}
	}
	if f.metric(metrics.NameFailed) != 1 {
		t.Errorf("failed metric %d", f.metric(metrics.NameFailed))
	}
}

// A child annotated signed=true whose links are in no backend (Chains'
// "signed with nothing stored") must not let the PipelineRun be signed.
func TestChildSignedWithoutLinksIsNotTrusted(t *testing.T) {
	pr, trs := pipelineRun(t, "build")
	trs[0].Annotations = map[string]string{taskrun.AnnotationSigned: "true"}
	f := newFixture(t, pr, trs)
	for i := 1; i < 3; i++ {
		if ok, _ := controller.IsRequeueKey(f.reconcile(pr)); !ok {
			t.Fatalf("attempt %d not retried", i)
		}
	}
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	a := f.get(pr).Annotations
	if a[taskrun.AnnotationSigned] != "failed" || !strings.Contains(a[taskrun.AnnotationError], "no link of step build.a") {
		t.Errorf("annotations %v", a)
	}
	if f.metric(metrics.NameRetries) != 2 || f.metric(metrics.NameFailed) != 1 {
		t.Errorf("metrics retries=%d failed=%d, want 2 and 1", f.metric(metrics.NameRetries), f.metric(metrics.NameFailed))
	}
}

func TestNeedsWork(t *testing.T) {
	pr, _ := pipelineRun(t, "build")
	if !NeedsWork(pr) {
		t.Error("finished unsigned PipelineRun")
	}
	running := pr.DeepCopy()
	running.Status = v1.PipelineRunStatus{}
	if !NeedsWork(running) {
		t.Error("running PipelineRun (gets the finalizer)")
	}
	for _, s := range []string{"true", "failed"} {
		done := pr.DeepCopy()
		done.Annotations = map[string]string{taskrun.AnnotationSigned: s}
		if NeedsWork(done) {
			t.Errorf("signed=%s", s)
		}
	}
	if NeedsWork(&v1.TaskRun{}) {
		t.Error("a TaskRun")
	}
}

func TestReconcileOnlyAsLeader(t *testing.T) {
	pr, trs := pipelineRun(t, "build")
	f := newFixture(t, pr, trs)
	f.signChildren(trs)
	f.r.Demote(reconciler.UniversalBucket())
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	if a := f.get(pr).Annotations; len(a) != 0 {
		t.Fatalf("a replica leading no bucket annotated %v", a)
	}
	var enqueued []types.NamespacedName
	if err := f.r.Promote(reconciler.UniversalBucket(), func(_ reconciler.Bucket, nn types.NamespacedName) { enqueued = append(enqueued, nn) }); err != nil {
		t.Fatal(err)
	}
	if len(enqueued) != 1 || enqueued[0].Name != pr.Name {
		t.Errorf("promotion enqueued %v, want the PipelineRun", enqueued)
	}
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	if f.get(pr).Annotations[taskrun.AnnotationSigned] != "true" {
		t.Error("leader did not sign")
	}
}

// A PipelineRun without any TaskRun (all skipped, or only CustomRuns) has
// nothing to attest: signed=failed at once, never signed=true.
func TestNoChildTaskRunFails(t *testing.T) {
	pr, _ := pipelineRun(t)
	f := newFixture(t, pr, nil)
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	a := f.get(pr).Annotations
	if a[taskrun.AnnotationSigned] != "failed" || !strings.Contains(a[taskrun.AnnotationError], "no child TaskRun") {
		t.Errorf("annotations %v", a)
	}
}

// A PipelineRun deleted right after it finished is held by the finalizer
// until its provenance is stored, then let go.
func TestDeletedRightAfterFinishing(t *testing.T) {
	pr, trs := pipelineRun(t, "build")
	now := metav1.Now()
	pr.DeletionTimestamp = &now
	pr.Finalizers = []string{taskrun.PipelineRunFinalizer}
	f := newFixture(t, pr, trs)
	f.signChildren(trs)
	if err := f.reconcile(pr); err != nil {
		t.Fatal(err)
	}
	got := f.get(pr)
	if got.Annotations[taskrun.AnnotationSigned] != "true" || len(got.Finalizers) != 0 {
		t.Fatalf("annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
	runProvenance(t, f.store, f.pub, pr)

	// Deleted while still running: nothing to attest, the finalizer goes.
	running, _ := pipelineRun(t, "build")
	running.Name = "running"
	running.Status = v1.PipelineRunStatus{}
	running.DeletionTimestamp = &now
	running.Finalizers = []string{taskrun.PipelineRunFinalizer}
	f = newFixture(t, running, nil)
	if err := f.reconcile(running); err != nil {
		t.Fatal(err)
	}
	if got := f.get(running); len(got.Annotations) != 0 || len(got.Finalizers) != 0 {
		t.Fatalf("running PipelineRun deleted: annotations %v finalizers %v", got.Annotations, got.Finalizers)
	}
}

package lifecycle_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/pipelinerun"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/store"
)

// env is the world of one row: a controllertest.Fixture with the TaskRun
// and PipelineRun Kinds and their lifecycle Reconcilers, the only replica.
type env struct {
	*controllertest.Fixture
	t      *testing.T
	trKind *taskrun.Kind
	prKind *pipelinerun.Kind
	tr     *lifecycle.Reconciler[*v1.TaskRun]
	pr     *lifecycle.Reconciler[*v1.PipelineRun]
	// before is a row's note of how many entries were stored before.
	before int
}

// waitDelay is the PipelineRun Kind's WaitDelay in the table.
const waitDelay = 42 * time.Millisecond

func newEnv(t *testing.T, cfg map[string]string, objs ...metav1.Object) *env {
	t.Helper()
	f := controllertest.New(t, cfg, objs...)
	e := &env{Fixture: f, t: t}
	e.trKind = &taskrun.Kind{Tekton: f.Client, Lister: f.TaskRunLister(), Signing: f.Signing}
	e.prKind = &pipelinerun.Kind{
		Tekton: f.Client, Lister: f.PipelineRunLister(), TaskRuns: f.TaskRunLister(), Signing: f.Signing, WaitDelay: waitDelay,
	}
	e.tr = lifecycle.New(e.trKind, f.Config, f.Recorder, f.Metrics)
	e.pr = lifecycle.New(e.prKind, f.Config, f.Recorder, f.Metrics)
	for _, la := range []reconciler.LeaderAware{e.tr, e.pr} {
		if err := la.Promote(reconciler.UniversalBucket(), nil); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// reconcile reconciles obj with the Reconciler of its kind.
func (e *env) reconcile(obj metav1.Object) error {
	e.t.Helper()
	if _, ok := obj.(*v1.PipelineRun); ok {
		return e.Reconcile(e.pr, obj)
	}
	return e.Reconcile(e.tr, obj)
}

// get returns obj as the API holds it now.
func (e *env) get(obj metav1.Object) metav1.Object {
	e.t.Helper()
	if pr, ok := obj.(*v1.PipelineRun); ok {
		return e.PipelineRun(pr)
	}
	return e.TaskRun(obj.(*v1.TaskRun))
}

// kind is the metrics kind of obj.
func kind(obj metav1.Object) string {
	if _, ok := obj.(*v1.PipelineRun); ok {
		return metrics.KindPipelineRun
	}
	return metrics.KindTaskRun
}

// signChildren runs the TaskRun lifecycle on trs until each is signed.
func (e *env) signChildren(trs []*v1.TaskRun) {
	e.t.Helper()
	for _, tr := range trs {
		if err := e.reconcile(tr); err != nil {
			e.t.Fatal(err)
		}
	}
}

// update writes obj (its metadata changed by the row) to the API and the
// listers.
func (e *env) update(obj metav1.Object) {
	e.t.Helper()
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *v1.TaskRun:
		_, err = e.Client.TektonV1().TaskRuns(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	case *v1.PipelineRun:
		_, err = e.Client.TektonV1().PipelineRuns(o.Namespace).Update(ctx, o, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.Sync()
}

// stepsealAnnotations are obj's stepseal.dev/* annotations.
func stepsealAnnotations(obj metav1.Object) map[string]string {
	out := map[string]string{}
	for k, v := range obj.GetAnnotations() {
		if strings.HasPrefix(k, "stepseal.dev/") {
			out[k] = v
		}
	}
	return out
}

// attempt is one reconcile of a row's key.
type attempt struct {
	// before runs first (the world changes between attempts).
	before func(t *testing.T, e *env)
	// requeue: the reconcile must ask for a requeue, after exactly after
	// when it is not zero; otherwise it must succeed.
	requeue bool
	after   time.Duration
	// check runs after it.
	check func(t *testing.T, e *env)
}

var (
	ok = attempt{}
	// requeued is any requeue.
	requeued = attempt{requeue: true}
)

func requeueAfter(d time.Duration) attempt { return attempt{requeue: true, after: d} }

// row is one case of the lifecycle, in the manner of knative's TableRow:
// the objects in the API, the key reconciled, the reconciles and what they
// must leave behind.
type row struct {
	name   string
	config map[string]string
	// objects are in the API and the listers; key is reconciled (it need
	// not be among them: then it is gone).
	objects []metav1.Object
	key     metav1.Object
	setup   func(t *testing.T, e *env)
	// attempts are the reconciles of key, in order; none means one, ok.
	attempts []attempt

	// What the key holds afterwards (unless gone): stepseal.dev/signed
	// ("" means no stepseal.dev annotation at all), strings that
	// stepseal.dev/error contains, stepseal.dev/retries ("" not checked),
	// and exactly these finalizers.
	wantSigned     string
	wantError      []string
	wantRetries    string
	wantFinalizers []string
	// wantEvents are the prefixes of exactly the Events recorded.
	wantEvents []string
	// wantEntries counts stored entries by kind ("" all), when not nil.
	wantEntries map[string]int
	// wantMetrics are metric values for the key's kind, when not nil.
	wantMetrics map[string]int64
	// check asserts what only this row asserts.
	check func(t *testing.T, e *env)
}

func (r row) run(t *testing.T) {
	e := newEnv(t, r.config, r.objects...)
	if r.setup != nil {
		r.setup(t, e)
	}
	attempts := r.attempts
	if len(attempts) == 0 {
		attempts = []attempt{ok}
	}
	for i, a := range attempts {
		if a.before != nil {
			a.before(t, e)
		}
		err := e.reconcile(r.key)
		requeue, after := controller.IsRequeueKey(err)
		switch {
		case a.requeue && (!requeue || (a.after != 0 && after != a.after)):
			t.Fatalf("attempt %d: err %v, want a requeue (after %v)", i+1, err, a.after)
		case !a.requeue && err != nil:
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		if a.check != nil {
			a.check(t, e)
		}
	}

	gone := !slices.ContainsFunc(r.objects, func(o metav1.Object) bool { return o == r.key })
	if !gone {
		got := e.get(r.key)
		a := stepsealAnnotations(got)
		if r.wantSigned == "" && len(a) != 0 {
			t.Errorf("annotations %v, want none of stepseal's", a)
		}
		if r.wantSigned != "" && a[annotations.Signed] != r.wantSigned {
			t.Errorf("%s = %q, want %q (annotations %v)", annotations.Signed, a[annotations.Signed], r.wantSigned, a)
		}
		for _, s := range r.wantError {
			if !strings.Contains(a[annotations.Error], s) {
				t.Errorf("%s = %q, want it to contain %q", annotations.Error, a[annotations.Error], s)
			}
		}
		if strings.Contains(a[annotations.Error], "PRIVATE KEY") {
			t.Error("key material in the error annotation")
		}
		if r.wantRetries != "" && a[annotations.Retries] != r.wantRetries {
			t.Errorf("%s = %q, want %q", annotations.Retries, a[annotations.Retries], r.wantRetries)
		}
		if fs := got.GetFinalizers(); !slices.Equal(fs, r.wantFinalizers) && len(fs)+len(r.wantFinalizers) > 0 {
			t.Errorf("finalizers %v, want %v", fs, r.wantFinalizers)
		}
	}
	events := e.Events()
	if len(events) != len(r.wantEvents) {
		t.Errorf("events %q, want %d starting %q", events, len(r.wantEvents), r.wantEvents)
	}
	for i := range min(len(events), len(r.wantEvents)) {
		if !strings.HasPrefix(events[i], r.wantEvents[i]) {
			t.Errorf("event %q, want %q...", events[i], r.wantEvents[i])
		}
	}
	for k, want := range r.wantEntries {
		if got := len(e.Entries(k)); got != want {
			t.Errorf("%d entries of kind %q stored, want %d", got, k, want)
		}
	}
	for name, want := range r.wantMetrics {
		if got := e.Metric(name, kind(r.key)); got != want {
			t.Errorf("metric %s = %d, want %d", name, got, want)
		}
	}
	if r.check != nil {
		r.check(t, e)
	}
}

// bucketOf leads exactly one key.
type bucketOf struct{ key types.NamespacedName }

func (b bucketOf) Name() string                     { return "only-" + b.key.Name }
func (b bucketOf) Has(nn types.NamespacedName) bool { return nn == b.key }

func buildPush(t *testing.T) *v1.TaskRun {
	return controllertest.LoadTaskRun(t, "../taskrun/testdata/build-push.json")
}

// verifyBuildPush checks the links and the provenance of build-push.json.
func verifyBuildPush(t *testing.T, e *env) {
	t.Helper()
	controllertest.VerifyStored(t, e.Store, e.Pub, controllertest.BuildPushRun, controllertest.BuildPushSteps, 1)
}

// TestLifecycleTaskRun is the lifecycle of TaskRuns (taskrun.Kind).
func TestLifecycleTaskRun(t *testing.T) {
	minimal := controllertest.Minimal
	giveUp := map[string]string{settings.KeyMaxRetries: "3", settings.KeyRetryBaseDelay: "1ms"}
	now := metav1.Now()
	var rows []row

	signed := buildPush(t)
	rows = append(rows, row{
		name:    "signs once and annotates",
		objects: []metav1.Object{signed}, key: signed,
		attempts: []attempt{{check: func(t *testing.T, e *env) {
			verifyBuildPush(t, e)
			// The image digest is a product of build-and-push (its step
			// artifact), of write-url (the IMAGE_URL/IMAGE_DIGEST results)
			// and the provenance subject.
			if es, err := e.Store.Get(context.Background(), "sha256:"+controllertest.AppDigest); err != nil || len(es) != 3 {
				t.Errorf("entries about the image: %d, %v (want 2 links and the provenance)", len(es), err)
			}
			// A signed TaskRun is left alone.
			if taskrun.NeedsWork(e.get(signed)) {
				t.Error("NeedsWork(signed TaskRun)")
			}
		}}, ok},
		wantSigned: annotations.SignedTrue,
		check:      verifyBuildPush,
	})

	rows = append(rows, func() row {
		tr := buildPush(t)
		return row{
			name:    "resumes without duplicates",
			objects: []metav1.Object{tr}, key: tr,
			// An earlier process stored everything, then died before
			// annotating: the TaskRun still carries the finalizer and no
			// annotation.
			setup: func(t *testing.T, e *env) {
				if _, _, err := e.trKind.Attest(context.Background(), tr, settings.Defaults()); err != nil {
					t.Fatal(err)
				}
				e.before = len(e.Entries(""))
				tr.Finalizers = []string{annotations.FinalizerTaskRun}
				e.update(tr)
			},
			wantSigned: annotations.SignedTrue,
			check: func(t *testing.T, e *env) {
				if after := len(e.Entries("")); after != e.before {
					t.Errorf("%d entries after resuming, want the %d stored before (ECDSA re-signing must not add copies)", after, e.before)
				}
				verifyBuildPush(t, e)
			},
		}
	}())

	rows = append(rows, func() row {
		tr := buildPush(t)
		unsigned := func(t *testing.T, e *env) {
			got := e.TaskRun(tr)
			if _, ok := got.Annotations[annotations.Signed]; ok {
				t.Fatalf("annotated %v while the backend refused", got.Annotations)
			}
			if !lifecycle.HasFinalizer(got, annotations.FinalizerTaskRun) {
				t.Fatal("no finalizer while unsigned")
			}
		}
		return row{
			name:    "retries then signs",
			config:  map[string]string{settings.KeyMaxRetries: "5", settings.KeyRetryBaseDelay: "10ms"},
			objects: []metav1.Object{tr}, key: tr,
			setup: func(t *testing.T, e *env) { e.Store.Failures.Store(1 << 20) }, // the backend is down for two attempts
			attempts: []attempt{
				{requeue: true, after: 10 * time.Millisecond, check: unsigned},
				{requeue: true, after: 20 * time.Millisecond, check: unsigned},
				{before: func(t *testing.T, e *env) { e.Store.Failures.Store(0) }}, // back up
			},
			wantSigned:  annotations.SignedTrue,
			wantMetrics: map[string]int64{metrics.NameRetries: 2, metrics.NameSigned: 1, metrics.NameLatency: 1, metrics.NameFailed: 0},
			check:       verifyBuildPush,
		}
	}())

	// Given up: signed=failed with the error and the attempts, no
	// finalizer, a Warning Event, counted once.
	gaveUp := func(r row, attempts int) row {
		r.config = giveUp
		r.attempts = nil
		for range attempts - 1 {
			r.attempts = append(r.attempts, requeued)
		}
		r.attempts = append(r.attempts, ok)
		r.wantSigned = annotations.SignedFailed
		r.wantRetries = strconv.Itoa(attempts)
		r.wantEvents = []string{"Warning SigningFailed"}
		r.wantMetrics = map[string]int64{metrics.NameFailed: 1, metrics.NameRetries: int64(attempts - 1), metrics.NameSigned: 0}
		return r
	}
	tr := minimal(nil)
	rows = append(rows, gaveUp(row{
		name:    "gives up: backend never accepts",
		objects: []metav1.Object{tr}, key: tr,
		setup:     func(t *testing.T, e *env) { e.Store.Failures.Store(1000) },
		wantError: []string{"backend test: storing link tr.s"},
	}, 3))
	tr = minimal(nil)
	rows = append(rows, gaveUp(row{
		name:    "gives up: wrong password",
		objects: []metav1.Object{tr}, key: tr,
		setup: func(t *testing.T, e *env) {
			sec, _ := controllertest.SigningSecret(t, "signing-secrets", "right")
			sec.Data[lifecycle.SecretKeyCosignPassword] = []byte("wrong")
			sec.ResourceVersion = "2"
			e.Signing.Secrets = controllertest.SecretLister(t, sec)
		},
		wantError:   []string{"signing Secret stepseal/signing-secrets"},
		wantEntries: map[string]int{store.KindLink: 0},
	}, 3))
	tr = minimal(nil)
	rows = append(rows, gaveUp(row{
		name:    "gives up: missing Secret",
		objects: []metav1.Object{tr}, key: tr,
		setup:       func(t *testing.T, e *env) { e.Signing.Secrets = controllertest.SecretLister(t) },
		wantError:   []string{`"signing-secrets" not found`},
		wantEntries: map[string]int{store.KindLink: 0},
	}, 3))
	tr = minimal(func(tr *v1.TaskRun) {
		tr.Status.Conditions[0].Status = corev1.ConditionFalse
		tr.Status.Steps = nil
	})
	rows = append(rows, gaveUp(row{
		name:    "gives up at once: no step ran",
		objects: []metav1.Object{tr}, key: tr,
		wantError:   []string{"nothing to attest"},
		wantEntries: map[string]int{store.KindLink: 0},
	}, 1))

	rows = append(rows, func() row {
		tr := buildPush(t)
		tr.DeletionTimestamp = &now
		tr.Finalizers = []string{annotations.FinalizerTaskRun}
		return row{
			name:    "deleted right after finishing: signed, then let go",
			objects: []metav1.Object{tr}, key: tr,
			wantSigned: annotations.SignedTrue,
			check:      verifyBuildPush,
		}
	}())

	running := minimal(func(tr *v1.TaskRun) { tr.Status.Conditions[0].Status = corev1.ConditionUnknown })
	rows = append(rows, row{
		name:    "running: the finalizer only; deleted before it finished: let go unsigned",
		objects: []metav1.Object{running}, key: running,
		attempts: []attempt{{
			// A running TaskRun only gets the finalizer (so it is held once
			// it finishes, however long the queue); nothing is signed yet.
			check: func(t *testing.T, e *env) {
				got := e.TaskRun(running)
				if len(got.Annotations) != 0 || !lifecycle.HasFinalizer(got, annotations.FinalizerTaskRun) {
					t.Errorf("running TaskRun: annotations %v finalizers %v, want the finalizer only", got.Annotations, got.Finalizers)
				}
			},
		}, {
			before: func(t *testing.T, e *env) {
				got := e.TaskRun(running)
				got.DeletionTimestamp = &now
				e.update(got)
			},
		}},
		wantEntries: map[string]int{"": 0},
	})

	signedWithFinalizer := minimal(func(tr *v1.TaskRun) {
		tr.Name = "done"
		tr.Annotations = map[string]string{annotations.Signed: annotations.SignedTrue}
		tr.Finalizers = []string{"other", annotations.FinalizerTaskRun}
	})
	rows = append(rows, row{
		name:    "signed, finalizer left over: only ours is removed",
		objects: []metav1.Object{signedWithFinalizer}, key: signedWithFinalizer,
		wantSigned:     annotations.SignedTrue,
		wantFinalizers: []string{"other"},
		wantEntries:    map[string]int{"": 0},
	})

	rows = append(rows, row{
		name: "gone",
		key:  minimal(func(tr *v1.TaskRun) { tr.Name = "gone" }),
	})

	// A replica signs only TaskRuns of buckets it leads, enqueues them when
	// promoted, and stops when demoted.
	rows = append(rows, func() row {
		tr := buildPush(t)
		mine := bucketOf{types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}}
		var enqueued []types.NamespacedName
		return row{
			name:    "only as leader",
			objects: []metav1.Object{tr}, key: tr,
			setup: func(t *testing.T, e *env) { e.tr.Demote(reconciler.UniversalBucket()) },
			attempts: []attempt{{
				check: func(t *testing.T, e *env) {
					if got := e.TaskRun(tr); len(got.Annotations) != 0 || len(got.Finalizers) != 0 || len(e.Entries("")) != 0 {
						t.Fatalf("a replica leading no bucket touched the TaskRun: annotations %v finalizers %v, %d entries", got.Annotations, got.Finalizers, len(e.Entries("")))
					}
				},
			}, {
				before: func(t *testing.T, e *env) {
					other := bucketOf{types.NamespacedName{Namespace: tr.Namespace, Name: "someone-else"}}
					if err := e.tr.Promote(other, func(reconciler.Bucket, types.NamespacedName) { t.Error("enqueued a key of another bucket") }); err != nil {
						t.Fatal(err)
					}
				},
				check: func(t *testing.T, e *env) {
					if len(e.Entries("")) != 0 {
						t.Fatal("signed a TaskRun of a bucket it does not lead")
					}
				},
			}, {
				before: func(t *testing.T, e *env) {
					if err := e.tr.Promote(mine, func(_ reconciler.Bucket, nn types.NamespacedName) { enqueued = append(enqueued, nn) }); err != nil {
						t.Fatal(err)
					}
					if len(enqueued) != 1 || enqueued[0] != mine.key {
						t.Errorf("promotion enqueued %v, want the unsigned TaskRun", enqueued)
					}
				},
			}},
			wantSigned: annotations.SignedTrue,
		}
	}())

	for _, r := range rows {
		t.Run(r.name, r.run)
	}
}

// TestLifecyclePipelineRun is the lifecycle of PipelineRuns
// (pipelinerun.Kind), whose children are signed by the TaskRun lifecycle.
func TestLifecyclePipelineRun(t *testing.T) {
	cfg := map[string]string{settings.KeyMaxRetries: "3", settings.KeyRetryBaseDelay: "1ms"}
	now := metav1.Now()
	objects := func(pr *v1.PipelineRun, trs []*v1.TaskRun) []metav1.Object {
		out := []metav1.Object{pr}
		for _, tr := range trs {
			out = append(out, tr)
		}
		return out
	}
	provenanceOf := func(pr *v1.PipelineRun, trs []*v1.TaskRun) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			p := controllertest.RunProvenance(t, e.Store, e.Pub, pr)
			controllertest.CheckNamesEveryChild(t, e.Store, p, pr, trs, pipelinerun.MediaTypeProvenance)
		}
	}
	noRunProvenance := func(t *testing.T, e *env) {
		for _, en := range e.Entries(store.KindProvenance) {
			if strings.HasSuffix(en.Name, ".pipelinerun.provenance") {
				t.Errorf("PipelineRun provenance %s stored for a failed run", en.Name)
			}
		}
	}
	var rows []row

	rows = append(rows, func() row {
		pr, trs := controllertest.PipelineRun(t, "build", "test")
		return row{
			name:    "signs once the children are signed",
			config:  cfg,
			objects: objects(pr, trs), key: pr,
			attempts: []attempt{
				// Children not signed yet: wait, without counting an attempt.
				requeueAfter(waitDelay),
				{requeue: true, after: waitDelay, check: func(t *testing.T, e *env) {
					got := e.PipelineRun(pr)
					if len(got.Annotations) != 0 {
						t.Fatalf("annotated %v before the children were signed", got.Annotations)
					}
					if !lifecycle.HasFinalizer(got, annotations.FinalizerPipelineRun) {
						t.Fatal("a finished, unsigned PipelineRun is not held by the finalizer")
					}
				}},
				// Not waiting for the second child would not requeue.
				{before: func(t *testing.T, e *env) { e.signChildren(trs[:1]) }, requeue: true},
				{before: func(t *testing.T, e *env) { e.signChildren(trs[1:]) }, check: func(t *testing.T, e *env) {
					got := e.PipelineRun(pr)
					p := controllertest.RunProvenance(t, e.Store, e.Pub, pr)
					controllertest.CheckNamesEveryChild(t, e.Store, p, pr, trs, pipelinerun.MediaTypeProvenance)
					if n := len(p.BuildDefinition.InternalParameters.AsMap()["tasks"].([]any)); n != 2 {
						t.Errorf("%d tasks in internalParameters, want 2", n)
					}
					if pipelinerun.NeedsWork(got) {
						t.Error("NeedsWork(signed PipelineRun)")
					}
				}},
				// Signed: left alone, nothing stored again.
				ok,
			},
			wantSigned:  annotations.SignedTrue,
			wantMetrics: map[string]int64{metrics.NameSigned: 1, metrics.NameRetries: 0},
			check:       func(t *testing.T, e *env) { controllertest.RunProvenance(t, e.Store, e.Pub, pr) },
		}
	}())

	rows = append(rows, func() row {
		pr, trs := controllertest.PipelineRun(t, "build")
		return row{
			name:    "resumes without a duplicate",
			config:  cfg,
			objects: objects(pr, trs), key: pr,
			// A process that stored the provenance and died before annotating.
			setup: func(t *testing.T, e *env) {
				e.signChildren(trs)
				if err := e.reconcile(pr); err != nil {
					t.Fatal(err)
				}
				e.before = len(e.Entries(""))
				got := e.PipelineRun(pr)
				got.Annotations = nil
				e.update(got)
			},
			wantSigned: annotations.SignedTrue,
			check: func(t *testing.T, e *env) {
				if after := len(e.Entries("")); after != e.before {
					t.Errorf("%d entries after resuming, want %d", after, e.before)
				}
				controllertest.RunProvenance(t, e.Store, e.Pub, pr)
			},
		}
	}())

	rows = append(rows, func() row {
		pr, trs := controllertest.PipelineRun(t, "build", "test")
		trs[1].Annotations = map[string]string{annotations.Signed: annotations.SignedFailed, annotations.Error: "backend dir: disk full"}
		return row{
			name:    "a child given up fails the PipelineRun at once",
			config:  cfg,
			objects: objects(pr, trs), key: pr,
			setup:       func(t *testing.T, e *env) { e.signChildren(trs[:1]) },
			wantSigned:  annotations.SignedFailed,
			wantError:   []string{"release-test", "disk full"},
			wantRetries: "1",
			wantEvents:  []string{"Warning SigningFailed"},
			wantMetrics: map[string]int64{metrics.NameFailed: 1},
			check:       noRunProvenance,
		}
	}())

	// A child annotated signed=true whose links are in no backend (Chains'
	// "signed with nothing stored") must not let the PipelineRun be signed.
	rows = append(rows, func() row {
		pr, trs := controllertest.PipelineRun(t, "build")
		trs[0].Annotations = map[string]string{annotations.Signed: annotations.SignedTrue}
		return row{
			name:    "a child signed without links is not trusted",
			config:  cfg,
			objects: objects(pr, trs), key: pr,
			attempts:    []attempt{requeued, requeued, ok},
			wantSigned:  annotations.SignedFailed,
			wantError:   []string{"no link of step build.a"},
			wantEvents:  []string{"Warning SigningFailed"},
			wantMetrics: map[string]int64{metrics.NameRetries: 2, metrics.NameFailed: 1},
			check:       noRunProvenance,
		}
	}())

	rows = append(rows, func() row {
		pr, trs := controllertest.PipelineRun(t, "build")
		var enqueued []types.NamespacedName
		return row{
			name:    "only as leader",
			config:  cfg,
			objects: objects(pr, trs), key: pr,
			setup: func(t *testing.T, e *env) {
				e.signChildren(trs)
				e.pr.Demote(reconciler.UniversalBucket())
			},
			attempts: []attempt{{
				check: func(t *testing.T, e *env) {
					if a := e.PipelineRun(pr).Annotations; len(a) != 0 {
						t.Fatalf("a replica leading no bucket annotated %v", a)
					}
				},
			}, {
				before: func(t *testing.T, e *env) {
					if err := e.pr.Promote(reconciler.UniversalBucket(), func(_ reconciler.Bucket, nn types.NamespacedName) { enqueued = append(enqueued, nn) }); err != nil {
						t.Fatal(err)
					}
					if len(enqueued) != 1 || enqueued[0].Name != pr.Name {
						t.Errorf("promotion enqueued %v, want the PipelineRun", enqueued)
					}
				},
			}},
			wantSigned: annotations.SignedTrue,
		}
	}())

	// A PipelineRun without any TaskRun (all skipped, or only CustomRuns)
	// has nothing to attest: signed=failed at once, never signed=true.
	none, _ := controllertest.PipelineRun(t)
	rows = append(rows, row{
		name:    "no child TaskRun: given up at once",
		config:  cfg,
		objects: []metav1.Object{none}, key: none,
		wantSigned: annotations.SignedFailed,
		wantError:  []string{"no child TaskRun"},
		wantEvents: []string{"Warning SigningFailed"},
	})

	// A PipelineRun deleted right after it finished is held by the
	// finalizer until its provenance is stored, then let go.
	rows = append(rows, func() row {
		pr, trs := controllertest.PipelineRun(t, "build")
		pr.DeletionTimestamp = &now
		pr.Finalizers = []string{annotations.FinalizerPipelineRun}
		return row{
			name:    "deleted right after finishing: signed, then let go",
			config:  cfg,
			objects: objects(pr, trs), key: pr,
			setup:      func(t *testing.T, e *env) { e.signChildren(trs) },
			wantSigned: annotations.SignedTrue,
			check:      provenanceOf(pr, trs),
		}
	}())

	// Deleted while still running: nothing to attest, the finalizer goes.
	running, _ := controllertest.PipelineRun(t, "build")
	running.Name = "running"
	running.Status = v1.PipelineRunStatus{}
	running.DeletionTimestamp = &now
	running.Finalizers = []string{annotations.FinalizerPipelineRun}
	rows = append(rows, row{
		name:    "deleted while running: let go unsigned",
		config:  cfg,
		objects: []metav1.Object{running}, key: running,
	})

	for _, r := range rows {
		t.Run(r.name, r.run)
	}
}

// TestNeedsWork is the informer filter of both kinds.
func TestNeedsWork(t *testing.T) {
	minimal := controllertest.Minimal
	pr, _ := controllertest.PipelineRun(t, "build")
	running := pr.DeepCopy()
	running.Status = v1.PipelineRunStatus{}
	prWith := func(signed string) *v1.PipelineRun {
		done := pr.DeepCopy()
		done.Annotations = map[string]string{annotations.Signed: signed}
		return done
	}
	for _, tc := range []struct {
		name string
		obj  any
		want bool
	}{
		{"not a TaskRun", &corev1.Pod{}, false},
		{"running (gets the finalizer)", minimal(func(tr *v1.TaskRun) { tr.Status.Conditions[0].Status = corev1.ConditionUnknown }), true},
		{"finished", minimal(nil), true},
		{"failed TaskRun", minimal(func(tr *v1.TaskRun) { tr.Status.Conditions[0].Status = corev1.ConditionFalse }), true},
		{"signed", minimal(func(tr *v1.TaskRun) { tr.Annotations = map[string]string{annotations.Signed: "true"} }), false},
		{"given up", minimal(func(tr *v1.TaskRun) { tr.Annotations = map[string]string{annotations.Signed: "failed"} }), false},
		{"signed, finalizer left", minimal(func(tr *v1.TaskRun) {
			tr.Annotations = map[string]string{annotations.Signed: "true"}
			tr.Finalizers = []string{annotations.FinalizerTaskRun}
		}), true},
		{"a PipelineRun", pr, false},
	} {
		if got := taskrun.NeedsWork(tc.obj); got != tc.want {
			t.Errorf("TaskRun %s: NeedsWork = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		obj  any
		want bool
	}{
		{"finished unsigned PipelineRun", pr, true},
		{"running PipelineRun (gets the finalizer)", running, true},
		{"signed=true", prWith("true"), false},
		{"signed=failed", prWith("failed"), false},
		{"a TaskRun", &v1.TaskRun{}, false},
	} {
		if got := pipelinerun.NeedsWork(tc.obj); got != tc.want {
			t.Errorf("PipelineRun %s: NeedsWork = %v, want %v", tc.name, got, tc.want)
		}
	}
}

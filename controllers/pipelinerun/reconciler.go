package pipelinerun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// MediaTypeProvenance is the media type of a child TaskRun's provenance
// (a DSSE envelope of an in-toto statement) among the byproducts.
const MediaTypeProvenance = "application/vnd.in-toto+json"

// AnnotationTaskRun names the child TaskRun on a byproduct descriptor.
const AnnotationTaskRun = "stepseal.dev/taskrun"

// DefaultWaitDelay is how long a PipelineRun waits before looking again at
// children that are not signed yet (a child being signed also requeues it).
const DefaultWaitDelay = 5 * time.Second

// Errors a reconcile can end with; the PipelineRun's stepseal.dev/error
// carries the message.
var (
	// ErrChildFailed: a child TaskRun is stepseal.dev/signed=failed, so the
	// run cannot be attested completely. Not retried.
	ErrChildFailed = errors.New("child TaskRun signing failed")
	// ErrChildMissing: a child named in status.childReferences is gone, or
	// a signed child's links are not in a backend. Retried.
	ErrChildMissing = errors.New("child TaskRun attestations missing")
)

// Reconciler attests finished PipelineRuns. One reconcile of a finished
// PipelineRun not yet signed:
//
//  1. look up the child TaskRuns in status.childReferences; any child
//     signed=failed fails the PipelineRun at once (ErrChildFailed); any
//     child not yet signed requeues it after WaitDelay, without counting
//     an attempt; no child TaskRun at all fails it (taskrun.ErrNothingRan);
//  2. build one run.Record of all children (taskrun.FromTaskRun each);
//  3. find every child's links and provenance in the first backend, and
//     require a link for every step of every child;
//  4. sign SLSA v1 provenance of the run: the links are byproducts, the
//     children's provenance envelopes too (media type MediaTypeProvenance),
//     each with its sha256 digest; a retry reuses the stored bytes;
//  5. Put it into every backend, then annotate stepseal.dev/signed=true.
//
// Failures are retried and given up like the TaskRun controller's.
//
// It is leader-aware (reconciler.LeaderAware): with knative's leader
// election a replica reconciles only keys of the buckets whose Lease it
// holds, and enqueues all of a bucket's pending keys when promoted.
type Reconciler struct {
	Tekton   versioned.Interface
	Lister   listers.PipelineRunLister
	TaskRuns listers.TaskRunLister
	Config   *settings.Store
	Recorder record.EventRecorder
	// Signer returns the signer for runs of a namespace (the TaskRun
	// controller's, so both levels are signed with the same key).
	Signer func(ctx context.Context, namespace string, cfg *settings.Config) (signing.Signer, error)
	// Backends opens the configured backends.
	Backends func(ctx context.Context, cfg *settings.Config) ([]taskrun.Backend, error)
	// Metrics records outcomes; nil records nothing.
	Metrics *metrics.Recorder
	// WaitDelay: see DefaultWaitDelay; zero means the default.
	WaitDelay time.Duration

	leader   reconciler.LeaderAwareFuncs
	attempts taskrun.Attempts
}

var (
	_ controller.Reconciler  = (*Reconciler)(nil)
	_ reconciler.LeaderAware = (*Reconciler)(nil)
)

// Promote implements reconciler.LeaderAware: this replica now leads bucket
// b, so every PipelineRun of b that needs work is enqueued.
func (r *Reconciler) Promote(b reconciler.Bucket, enq func(reconciler.Bucket, types.NamespacedName)) error {
	return taskrun.PromoteAll(&r.leader, b, enq, func() ([]*v1.PipelineRun, error) { return r.Lister.List(labels.Everything()) }, NeedsWork)
}

// Demote implements reconciler.LeaderAware: keys of b are left to the
// replica that leads it now.
func (r *Reconciler) Demote(b reconciler.Bucket) { r.leader.Demote(b) }

// NeedsWork is the PipelineRun informer filter: not yet signed or failed
// (running ones get the finalizer, finished ones are signed), or still
// holding the finalizer.
func NeedsWork(obj any) bool {
	pr, ok := obj.(*v1.PipelineRun)
	if !ok {
		return false
	}
	return taskrun.HasFinalizer(pr, taskrun.PipelineRunFinalizer) || !taskrun.IsDecided(pr.Annotations)
}

// Reconcile implements controller.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, key string) error {
	ctx, cached, found, err := taskrun.Lookup(ctx, key, "pipelinerun", &r.leader, func(ns, name string) (*v1.PipelineRun, error) {
		return r.Lister.PipelineRuns(ns).Get(name)
	})
	if !found {
		return err
	}
	logger := logging.FromContext(ctx)
	if !NeedsWork(cached) {
		return nil
	}
	pr := cached.DeepCopy()
	cfg := r.Config.Load()
	if taskrun.IsDecided(pr.Annotations) {
		// Decided, finalizer left over (the annotating patch failed).
		return ignoreNotFound(r.annotate(ctx, pr, nil))
	}
	if pr.DeletionTimestamp == nil && !taskrun.HasFinalizer(pr, taskrun.PipelineRunFinalizer) {
		// Held from the moment we see it until it is signed, so deleting
		// it right after it finished does not lose its provenance.
		if pr, err = r.patch(ctx, pr, nil, true); err != nil {
			return ignoreNotFound(err)
		}
	}
	if !pr.IsDone() {
		if pr.DeletionTimestamp != nil && taskrun.HasFinalizer(pr, taskrun.PipelineRunFinalizer) {
			// Deleted before it finished: nothing to attest; let it go.
			return ignoreNotFound(r.annotate(ctx, pr, nil))
		}
		return nil
	}

	children, pending, err := r.children(ctx, pr)
	if err == nil && len(pending) > 0 {
		logger.Debugw("waiting for child TaskRuns to be signed", "pending", pending)
		return controller.NewRequeueAfter(r.waitDelay())
	}
	if err == nil && len(children) == 0 {
		// Nothing would be stored: never annotate such a run signed=true.
		err = fmt.Errorf("%w: PipelineRun %s has no child TaskRun", taskrun.ErrNothingRan, key)
	}
	var n int
	var logIndex string
	if err == nil {
		n, logIndex, err = r.attestAndStore(ctx, pr, children, cfg)
	}
	if err == nil {
		r.attempts.Forget(pr.UID)
		annotations := map[string]*string{
			taskrun.AnnotationSigned: ptr("true"), taskrun.AnnotationError: nil, taskrun.AnnotationRetries: nil,
			taskrun.AnnotationLogIndex: nil,
		}
		if logIndex != "" {
			annotations[taskrun.AnnotationLogIndex] = &logIndex
		}
		if err := r.annotate(ctx, pr, annotations); err != nil {
			return ignoreNotFound(err)
		}
		var done time.Time
		if pr.Status.CompletionTime != nil {
			done = pr.Status.CompletionTime.Time
		}
		r.Metrics.Signed(ctx, metrics.KindPipelineRun, done, time.Now())
		logger.Infow("signed", "entries", n, "taskRuns", len(children))
		return nil
	}

	permanent := errors.Is(err, ErrChildFailed) || errors.Is(err, taskrun.ErrMalformed) || errors.Is(err, taskrun.ErrNothingRan)
	return r.attempts.Failed(ctx, pr, metrics.KindPipelineRun, err, permanent, cfg, r.Recorder, r.Metrics, func(a map[string]*string) error {
		return r.annotate(ctx, pr, a)
	})
}

// children returns the PipelineRun's child TaskRuns in childReferences
// order, and the names of those not signed yet (then no child is returned).
//
// The informer cache holds decided TaskRuns slimmed (taskrun.Slim), so a
// signed child is read whole from the API.
func (r *Reconciler) children(ctx context.Context, pr *v1.PipelineRun) ([]*v1.TaskRun, []string, error) {
	type child struct {
		tr  *v1.TaskRun
		ref v1.ChildStatusReference
	}
	var signed []child
	var pending []string
	for _, ref := range pr.Status.ChildReferences {
		if ref.Kind != pipeline.TaskRunControllerName {
			continue // CustomRuns have no steps to attest
		}
		tr, err := r.TaskRuns.TaskRuns(pr.Namespace).Get(ref.Name)
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("%w: TaskRun %s/%s (pipeline task %s) not found", ErrChildMissing, pr.Namespace, ref.Name, ref.PipelineTaskName)
		}
		if err != nil {
			return nil, nil, err
		}
		switch tr.Annotations[taskrun.AnnotationSigned] {
		case "true":
			signed = append(signed, child{tr, ref})
		case "failed":
			return nil, nil, fmt.Errorf("%w: TaskRun %s/%s (pipeline task %s): %s", ErrChildFailed, tr.Namespace, tr.Name, ref.PipelineTaskName, tr.Annotations[taskrun.AnnotationError])
		default:
			pending = append(pending, tr.Name)
		}
	}
	if len(pending) > 0 {
		return nil, pending, nil // read nothing whole while still waiting
	}
	var out []*v1.TaskRun
	for _, c := range signed {
		full, err := r.Tekton.TektonV1().TaskRuns(pr.Namespace).Get(ctx, c.ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("%w: TaskRun %s/%s (pipeline task %s) not found", ErrChildMissing, pr.Namespace, c.ref.Name, c.ref.PipelineTaskName)
		}
		if err != nil {
			return nil, nil, err
		}
		if full.UID != c.tr.UID || full.Annotations[taskrun.AnnotationSigned] != "true" {
			pending = append(pending, c.tr.Name) // changed since the cache saw it
			continue
		}
		out = append(out, full)
	}
	return out, pending, nil
}

// ProvenanceName is the store name of a PipelineRun's provenance; distinct
// from its TaskRuns' "<ns>/<name>.<keyid>.provenance".
func ProvenanceName(pr *v1.PipelineRun, keyID string) string {
	return fmt.Sprintf("%s/%s.%.8s.pipelinerun.provenance", pr.Namespace, pr.Name, keyID)
}

func (r *Reconciler) attestAndStore(ctx context.Context, pr *v1.PipelineRun, children []*v1.TaskRun, cfg *settings.Config) (n int, logIndex string, err error) {
	backends, err := r.Backends(ctx, cfg)
	if err != nil {
		return 0, "", err
	}
	if len(backends) == 0 {
		return 0, "", errors.New("no storage backend configured: nothing would be stored")
	}
	signer, err := r.Signer(ctx, pr.Namespace, cfg)
	if err != nil {
		return 0, "", err
	}
	keyID, err := signer.KeyID()
	if err != nil {
		return 0, "", err
	}
	runID := string(pr.UID)
	rec := &run.Record{
		Pipeline:  pipelineName(pr),
		RunID:     runID,
		Namespace: pr.Namespace,
		Source:    taskrun.Source,
		Params:    map[string]string{},
		Results:   map[string]string{},
	}
	if pr.Status.StartTime != nil {
		rec.StartedAt = pr.Status.StartTime.Time
	}
	if pr.Status.CompletionTime != nil {
		rec.FinishedAt = pr.Status.CompletionTime.Time
	}
	for _, p := range pr.Spec.Params {
		rec.Params[p.Name] = valueString(p.Value)
	}
	for _, res := range pr.Status.Results {
		rec.Results[res.Name] = valueString(res.Value)
	}
	subjects := run.Artifacts{}
	for _, tr := range children {
		built, err := taskrun.FromTaskRun(tr)
		if err != nil {
			return 0, "", fmt.Errorf("child TaskRun %s: %w", tr.Name, err)
		}
		if built.Record.RunID != runID {
			return 0, "", fmt.Errorf("%w: child TaskRun %s is bound to run %s, not to PipelineRun UID %s", taskrun.ErrMalformed, tr.Name, built.Record.RunID, runID)
		}
		rec.Tasks = append(rec.Tasks, built.Record.Tasks...)
		for k, v := range built.Subjects {
			subjects[k] = v
		}
	}

	// The children's attestations, as the first store backend holds them.
	var first *taskrun.Backend
	for i := range backends {
		if backends[i].Store != nil {
			first = &backends[i]
			break
		}
	}
	if first == nil {
		return 0, "", errors.New("no store backend configured: the children's attestations cannot be read")
	}
	stored, err := first.Store.List(ctx, store.Filter{RunID: runID})
	if err != nil {
		return 0, "", fmt.Errorf("backend %s: listing run %s: %w", first.Name, runID, err)
	}
	links := run.Artifacts{}
	var previous store.Entry
	provName := ProvenanceName(pr, keyID)
	childProv := map[string]store.Entry{} // by TaskRun name
	for _, e := range stored {
		switch {
		case e.Kind == store.KindLink:
			links[e.Name] = run.DigestSet{"sha256": strings.TrimPrefix(store.Digest(e.Data), "sha256:")}
		case e.Kind == store.KindProvenance && e.Name == provName:
			previous = e
		case e.Kind == store.KindProvenance:
			for _, tr := range children {
				if strings.HasPrefix(e.Name, tr.Namespace+"/"+tr.Name+".") && !strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
					childProv[tr.Name] = e
				}
			}
		}
	}
	for _, t := range rec.Tasks {
		for _, s := range t.Steps {
			if !hasLink(links, s.Name) {
				return 0, "", fmt.Errorf("%w: TaskRun %s is signed but backend %s has no link of step %s", ErrChildMissing, t.TaskRun, first.Name, s.Name)
			}
		}
	}

	opts := attest.ProvenanceOptions{Subjects: subjects, BuilderID: cfg.BuilderID, Links: links}
	st, err := attest.Provenance(rec, opts)
	if err != nil {
		// No child declared an output and the last step produced nothing:
		// the children's signed links and provenance are stored, and there
		// is nothing the run's provenance could be about.
		logging.FromContext(ctx).Infow("no PipelineRun provenance: no subject", zap.Error(err))
		return 0, "", nil
	}
	if st, err = withChildProvenance(st, children, childProv); err != nil {
		return 0, "", err
	}
	data, ok := taskrun.ReusableStatement(previous, st)
	if !ok {
		env, err := attest.SignStatement(ctx, st, signer)
		if err != nil {
			return 0, "", fmt.Errorf("signing provenance: %w", err)
		}
		if data, err = json.Marshal(env); err != nil {
			return 0, "", err
		}
	}
	var subj []string
	for _, s := range st.Subject {
		if d, ok := s.Digest["sha256"]; ok {
			subj = append(subj, "sha256:"+d)
		}
	}
	e := store.Entry{Kind: store.KindProvenance, Name: provName, RunID: runID, Subjects: subj, Data: data}
	// Image attachers are skipped: run-level provenance is not attached (yet).
	if logIndex, err = taskrun.PutAll(ctx, backends, []store.Entry{e}); err != nil {
		return 0, "", err
	}
	return 1, logIndex, nil
}

// withChildProvenance adds each child's provenance envelope to the
// statement's byproducts.
func withChildProvenance(st *intoto.Statement, children []*v1.TaskRun, prov map[string]store.Entry) (*intoto.Statement, error) {
	b, err := protojson.Marshal(st.Predicate)
	if err != nil {
		return nil, err
	}
	pred := &provenance.Provenance{}
	if err := protojson.Unmarshal(b, pred); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(prov))
	for n := range prov {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := prov[n]
		ann, err := structpb.NewStruct(map[string]any{AnnotationTaskRun: n})
		if err != nil {
			return nil, err
		}
		pred.RunDetails.Byproducts = append(pred.RunDetails.Byproducts, &intoto.ResourceDescriptor{
			Name:        e.Name,
			Digest:      map[string]string{"sha256": strings.TrimPrefix(store.Digest(e.Data), "sha256:")},
			MediaType:   MediaTypeProvenance,
			Annotations: ann,
		})
	}
	if err := pred.Validate(); err != nil {
		return nil, err
	}
	if b, err = protojson.Marshal(pred); err != nil {
		return nil, err
	}
	ps := &structpb.Struct{}
	if err := protojson.Unmarshal(b, ps); err != nil {
		return nil, err
	}
	st.Predicate = ps
	return st, st.Validate()
}

// hasLink reports whether links holds a link file of step
// ("<step>.<keyid[:8]>.link").
func hasLink(links run.Artifacts, step string) bool {
	for name := range links {
		if strings.HasPrefix(name, step+".") && strings.HasSuffix(name, ".link") && strings.Count(name[len(step)+1:], ".") == 1 {
			return true
		}
	}
	return false
}

func pipelineName(pr *v1.PipelineRun) string {
	if n := pr.Labels[pipeline.PipelineLabelKey]; n != "" {
		return n
	}
	if pr.Spec.PipelineRef != nil && pr.Spec.PipelineRef.Name != "" {
		return pr.Spec.PipelineRef.Name
	}
	return pr.Name
}

func valueString(v v1.ParamValue) string {
	if v.Type == v1.ParamTypeString || v.Type == "" {
		return v.StringVal
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (r *Reconciler) waitDelay() time.Duration {
	if r.WaitDelay > 0 {
		return r.WaitDelay
	}
	return DefaultWaitDelay
}

// annotate merge-patches pr's annotations, guarded by its resourceVersion.
// annotate sets annotations (nil value: remove) and removes the finalizer.
func (r *Reconciler) annotate(ctx context.Context, pr *v1.PipelineRun, annotations map[string]*string) error {
	_, err := r.patch(ctx, pr, annotations, false)
	return err
}

// patch merge-patches pr's annotations and adds or removes the finalizer,
// guarded by pr's resourceVersion.
func (r *Reconciler) patch(ctx context.Context, pr *v1.PipelineRun, annotations map[string]*string, addFinalizer bool) (*v1.PipelineRun, error) {
	body, err := taskrun.MetaPatch(pr, taskrun.PipelineRunFinalizer, addFinalizer, annotations)
	if err != nil {
		return nil, err
	}
	return r.Tekton.TektonV1().PipelineRuns(pr.Namespace).Patch(ctx, pr.Name, types.MergePatchType, body, metav1.PatchOptions{})
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func ptr(s string) *string { return &s }

package pipelinerun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/structpb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/controllers/taskrun"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/trustroot"
)

// MediaTypeProvenance is the media type of a child TaskRun's provenance
// (a DSSE envelope of an in-toto statement) among the byproducts.
const MediaTypeProvenance = "application/vnd.in-toto+json"

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

// Kind is the PipelineRun's lifecycle.Kind: the lifecycle of package
// lifecycle over PipelineRuns. Its Attest, for a finished PipelineRun:
//
//  1. looks up the child TaskRuns in status.childReferences; any child
//     signed=failed fails the PipelineRun at once (ErrChildFailed); any
//     child not yet signed requeues it after WaitDelay, without counting
//     an attempt (lifecycle.Wait); no child TaskRun at all fails it
//     (taskrun.ErrNothingRan);
//  2. builds one run.Record of all children (taskrun.FromTaskRun each);
//  3. finds every child's links and provenance in the first backend, and
//     requires a link for every step of every child;
//  4. signs a skip record for each step of each task Tekton skipped
//     (status.skippedTasks; see skipRecords), then SLSA v1 provenance of
//     the run: the links and skip records are byproducts, the children's
//     provenance envelopes too (media type MediaTypeProvenance), each with
//     its sha256 digest; a retry reuses the stored bytes;
//  5. Puts the skip records, then the provenance, into every backend;
//  6. with vsa.enabled, verifies the run against its layout and signs,
//     stores and attaches a verification summary (see summarize); the
//     lifecycle then annotates stepseal.dev/signed=true (and
//     stepseal.dev/vsa).
//
// Keys and backends are resolved the TaskRun controller's way, through the
// same lifecycle.Signing of the process's Shared, so both levels are signed
// with the same key.
type Kind struct {
	Tekton   versioned.Interface
	Lister   listers.PipelineRunLister
	TaskRuns listers.TaskRunLister
	*lifecycle.Signing
	// WaitDelay: see DefaultWaitDelay; zero means the default.
	WaitDelay time.Duration
	// Trust is the controller's TUF trust root (nil, or returning nil:
	// none), where the VSA step takes layouts from (see summarize).
	Trust func() *trustroot.Root
	// Recorder receives the VSA step's Events; nil: none.
	Recorder record.EventRecorder
}

var _ lifecycle.Kind[*v1.PipelineRun] = (*Kind)(nil)

// Name implements lifecycle.Kind.
func (*Kind) Name() string { return metrics.KindPipelineRun }

// Finalizer implements lifecycle.Kind.
func (*Kind) Finalizer() string { return annotations.FinalizerPipelineRun }

// Get implements lifecycle.Kind.
func (r *Kind) Get(namespace, name string) (*v1.PipelineRun, error) {
	return r.Lister.PipelineRuns(namespace).Get(name)
}

// List implements lifecycle.Kind.
func (r *Kind) List() ([]*v1.PipelineRun, error) { return r.Lister.List(labels.Everything()) }

// Patch implements lifecycle.Kind.
func (r *Kind) Patch(ctx context.Context, pr *v1.PipelineRun, patch []byte) (*v1.PipelineRun, error) {
	return r.Tekton.TektonV1().PipelineRuns(pr.Namespace).Patch(ctx, pr.Name, types.MergePatchType, patch, metav1.PatchOptions{})
}

// IsDone implements lifecycle.Kind.
func (*Kind) IsDone(pr *v1.PipelineRun) bool { return pr.IsDone() }

// CompletedAt implements lifecycle.Kind.
func (*Kind) CompletedAt(pr *v1.PipelineRun) time.Time {
	if pr.Status.CompletionTime == nil {
		return time.Time{}
	}
	return pr.Status.CompletionTime.Time
}

// Permanent implements lifecycle.Kind.
func (*Kind) Permanent(err error) bool {
	return errors.Is(err, ErrChildFailed) || errors.Is(err, taskrun.ErrMalformed) || errors.Is(err, taskrun.ErrNothingRan)
}

// NeedsWork is the PipelineRun informer filter (lifecycle.NeedsWork): not
// yet signed or failed (running ones get the finalizer, finished ones are
// signed), or still holding the finalizer.
func NeedsWork(obj any) bool {
	return lifecycle.NeedsWork[*v1.PipelineRun](obj, annotations.FinalizerPipelineRun)
}

// Attest implements lifecycle.Kind: steps 1 to 6 of Kind.
func (r *Kind) Attest(ctx context.Context, pr *v1.PipelineRun, cfg *settings.Config) (int, string, error) {
	children, pending, err := r.children(ctx, pr)
	if err != nil {
		return 0, "", err
	}
	if len(pending) > 0 {
		logging.FromContext(ctx).Debugw("waiting for child TaskRuns to be signed", "pending", pending)
		return 0, "", lifecycle.Wait(r.waitDelay())
	}
	if len(children) == 0 {
		// Nothing would be stored: never annotate such a run signed=true.
		return 0, "", fmt.Errorf("%w: PipelineRun %s/%s has no child TaskRun", taskrun.ErrNothingRan, pr.Namespace, pr.Name)
	}
	logging.FromContext(ctx).Debugw("every child TaskRun is signed", "taskRuns", len(children))
	return r.attestAndStore(ctx, pr, children, cfg)
}

// children returns the PipelineRun's child TaskRuns in childReferences
// order, and the names of those not signed yet (then no child is returned).
//
// The informer cache holds decided TaskRuns slimmed (taskrun.Slim), so a
// signed child is read whole from the API.
func (r *Kind) children(ctx context.Context, pr *v1.PipelineRun) ([]*v1.TaskRun, []string, error) {
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
		switch tr.Annotations[annotations.Signed] {
		case "true":
			signed = append(signed, child{tr, ref})
		case "failed":
			return nil, nil, fmt.Errorf("%w: TaskRun %s/%s (pipeline task %s): %s", ErrChildFailed, tr.Namespace, tr.Name, ref.PipelineTaskName, tr.Annotations[annotations.Error])
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
		if full.UID != c.tr.UID || full.Annotations[annotations.Signed] != "true" {
			pending = append(pending, c.tr.Name) // changed since the cache saw it
			continue
		}
		out = append(out, full)
	}
	return out, pending, nil
}

func (r *Kind) attestAndStore(ctx context.Context, pr *v1.PipelineRun, children []*v1.TaskRun, cfg *settings.Config) (n int, logIndex string, err error) {
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
	var images []string
	for _, tr := range children {
		built, err := taskrun.FromTaskRun(tr)
		if err != nil {
			return 0, "", fmt.Errorf("child TaskRun %s: %w", tr.Name, err)
		}
		// The record pair's steps have no link: the TaskRun controller
		// signed the step between them.
		taskrun.DropRecorderSteps(tr, built)
		if built.Record.RunID != runID {
			return 0, "", fmt.Errorf("%w: child TaskRun %s is bound to run %s, not to PipelineRun UID %s", taskrun.ErrMalformed, tr.Name, built.Record.RunID, runID)
		}
		rec.Tasks = append(rec.Tasks, built.Record.Tasks...)
		images = append(images, built.Images...)
		for k, v := range built.Subjects {
			subjects[k] = v
		}
	}

	// The children's attestations, as the first store backend holds them.
	var first *lifecycle.Backend
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
	var links, previous []store.Entry
	provName := seal.PipelineRunProvenanceName(pr.Namespace, pr.Name, keyID)
	childProv := map[string]store.Entry{} // by TaskRun name
	for _, e := range stored {
		switch {
		case e.Kind == store.KindLink:
			links = append(links, e)
		case e.Kind == store.KindProvenance && e.Name == provName:
			previous = append(previous, e)
		case e.Kind == store.KindProvenance:
			for _, tr := range children {
				if seal.IsTaskRunProvenanceOf(e.Name, tr.Namespace, tr.Name) {
					childProv[tr.Name] = e
				}
			}
		}
	}
	for _, t := range rec.Tasks {
		for _, s := range t.Steps {
			if !slices.ContainsFunc(links, func(e store.Entry) bool { return seal.IsLinkOf(e.Name, s.Name) }) {
				return 0, "", fmt.Errorf("%w: TaskRun %s is signed but backend %s has no link of step %s", ErrChildMissing, t.TaskRun, first.Name, s.Name)
			}
		}
	}

	// Skip records for the tasks Tekton skipped: stored with the run's
	// provenance (before it), which names them among its links.
	skips, err := r.skipRecords(ctx, pr, rec, signer, seal.PreviousOf(links...))
	if err != nil {
		return 0, "", err
	}
	for _, e := range skips {
		if !slices.ContainsFunc(links, func(l store.Entry) bool { return l.Name == e.Name }) {
			links = append(links, e)
		}
	}

	byproducts, err := childProvenance(childProv)
	if err != nil {
		return 0, "", err
	}
	// A run that declared no output and whose last step produced nothing
	// (a test pipeline) still gets provenance: about its signed links and
	// skip records, as the local runner's.
	opts := attest.ProvenanceOptions{Subjects: subjects, BuilderID: cfg.BuilderID, Links: seal.Digests(links), Byproducts: byproducts, LinkSubjects: true}
	st, err := attest.Provenance(rec, opts)
	if err != nil {
		// No child declared an output and the last step produced nothing:
		// the children's signed links and provenance are stored, and there
		// is nothing the run's provenance could be about.
		logging.FromContext(ctx).Infow("no PipelineRun provenance: no subject", zap.Error(err))
		if len(skips) == 0 {
			return 0, "", nil
		}
		logIndex, err := seal.Put(ctx, lifecycle.Targets(backends), skips)
		return len(skips), logIndex, err
	}
	e, err := seal.Provenance(ctx, st, provName, runID, signer, seal.PreviousOf(previous...), false)
	if err != nil {
		return 0, "", err
	}
	// Image attachers are skipped: run-level provenance is not attached (yet).
	if logIndex, err = seal.Put(ctx, lifecycle.Targets(backends), append(skips, e)); err != nil {
		return 0, "", err
	}
	// The verification summary (vsa.enabled), about the run's images.
	prov := append(slices.Collect(maps.Values(childProv)), e)
	if err := r.summarize(ctx, summaryInput{pr: pr, pipeline: rec.Pipeline, runID: runID, images: images,
		links: links, provenance: prov, backends: backends}, cfg); err != nil {
		return 0, "", err
	}
	return 1 + len(skips), logIndex, nil
}

// childProvenance describes each child's provenance envelope as a
// byproduct of the run's provenance (media type MediaTypeProvenance, the
// child TaskRun's name in an annotations.TaskRun annotation), in the order
// of the TaskRuns' names.
func childProvenance(prov map[string]store.Entry) ([]*intoto.ResourceDescriptor, error) {
	var out []*intoto.ResourceDescriptor
	for _, n := range slices.Sorted(maps.Keys(prov)) {
		e := prov[n]
		ann, err := structpb.NewStruct(map[string]any{annotations.TaskRun: n})
		if err != nil {
			return nil, err
		}
		out = append(out, &intoto.ResourceDescriptor{
			Name:        e.Name,
			Digest:      map[string]string{"sha256": strings.TrimPrefix(store.Digest(e.Data), "sha256:")},
			MediaType:   MediaTypeProvenance,
			Annotations: ann,
		})
	}
	return out, nil
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

func (r *Kind) waitDelay() time.Duration {
	if r.WaitDelay > 0 {
		return r.WaitDelay
	}
	return DefaultWaitDelay
}

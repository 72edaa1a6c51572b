package taskrun

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/logging"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/lifecycle"
	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/store"
)

// Kind is the TaskRun's lifecycle.Kind: the lifecycle of package lifecycle
// (finalizer from first sight, wait until done, attest, annotate, retry or
// give up) over TaskRuns, whose Attest builds the run.Record (FromTaskRun),
// seals it with pkg/seal — one in-toto link per step and the SLSA v1
// provenance, reusing the exact bytes an earlier, interrupted attempt
// stored, so a retry never stores a second copy (ECDSA signatures differ on
// every signing), Put into every backend links first, provenance last — and
// attaches the provenance to the TaskRun's images in every backend that
// attaches. A TaskRun without any step that ran (ErrNothingRan) or without
// a name or UID (ErrMalformed) is given up at once.
type Kind struct {
	Tekton versioned.Interface
	Lister listers.TaskRunLister
	// PodLogs reads the logs of stepseal-record-start/stop steps (Measured);
	// nil: a TaskRun with such steps cannot be checked.
	PodLogs PodLogs
	*lifecycle.Signing
}

var _ lifecycle.Kind[*v1.TaskRun] = (*Kind)(nil)

// Name implements lifecycle.Kind.
func (*Kind) Name() string { return metrics.KindTaskRun }

// Finalizer implements lifecycle.Kind.
func (*Kind) Finalizer() string { return annotations.FinalizerTaskRun }

// Get implements lifecycle.Kind.
func (r *Kind) Get(namespace, name string) (*v1.TaskRun, error) {
	return r.Lister.TaskRuns(namespace).Get(name)
}

// List implements lifecycle.Kind.
func (r *Kind) List() ([]*v1.TaskRun, error) { return r.Lister.List(labels.Everything()) }

// Patch implements lifecycle.Kind.
func (r *Kind) Patch(ctx context.Context, tr *v1.TaskRun, patch []byte) (*v1.TaskRun, error) {
	return r.Tekton.TektonV1().TaskRuns(tr.Namespace).Patch(ctx, tr.Name, types.MergePatchType, patch, metav1.PatchOptions{})
}

// IsDone implements lifecycle.Kind.
func (*Kind) IsDone(tr *v1.TaskRun) bool { return tr.IsDone() }

// CompletedAt implements lifecycle.Kind: tr's completionTime, zero when
// Tekton wrote none.
func (*Kind) CompletedAt(tr *v1.TaskRun) time.Time {
	if tr.Status.CompletionTime == nil {
		return time.Time{}
	}
	return tr.Status.CompletionTime.Time
}

// Permanent implements lifecycle.Kind.
func (*Kind) Permanent(err error) bool {
	return errors.Is(err, ErrNothingRan) || errors.Is(err, ErrMalformed) ||
		(errors.Is(err, ErrMeasurement) && errors.Is(err, reject.ErrRefused))
}

// Attest implements lifecycle.Kind.
func (r *Kind) Attest(ctx context.Context, tr *v1.TaskRun, cfg *settings.Config) (int, string, error) {
	return r.attestAndStore(ctx, tr, cfg)
}

// NeedsWork is the TaskRun informer filter (lifecycle.NeedsWork): TaskRuns
// not yet signed or failed (running ones get the finalizer, finished ones
// are signed), and any TaskRun still holding the finalizer.
func NeedsWork(obj any) bool {
	return lifecycle.NeedsWork[*v1.TaskRun](obj, annotations.FinalizerTaskRun)
}

// attestAndStore signs and stores the TaskRun's links and provenance and
// returns how many entries every backend accepted, and the transparency-log
// index of the provenance when a "tlog" backend is configured.
func (r *Kind) attestAndStore(ctx context.Context, tr *v1.TaskRun, cfg *settings.Config) (n int, logIndex string, err error) {
	logger := logging.FromContext(ctx)
	built, err := FromTaskRun(tr)
	if err != nil {
		return 0, "", err
	}
	// Steps measured in the Pod by the record StepActions get what was
	// measured, checked against the status, or the TaskRun is not signed.
	if err := (&Measured{Images: cfg.RecordImages, Logs: r.PodLogs}).Apply(ctx, tr, built); err != nil {
		return 0, "", err
	}
	for _, w := range built.Warnings {
		logger.Infow("status part not attested", "reason", w)
	}
	backends, err := r.Backends(ctx, cfg)
	if err != nil {
		return 0, "", err
	}
	if len(backends) == 0 {
		return 0, "", errors.New("no storage backend configured: nothing would be stored")
	}
	signer, err := r.Signer(ctx, tr.Namespace, cfg)
	if err != nil {
		return 0, "", err
	}
	keyID, err := signer.KeyID()
	if err != nil {
		return 0, "", err
	}
	rec := built.Record

	// What an interrupted earlier attempt stored. Only a TaskRun that
	// already carries the finalizer can have one, so fresh TaskRuns skip
	// the lookup.
	targets := lifecycle.Targets(backends)
	var previous seal.Previous
	if hasFinalizer(tr) {
		if previous, err = seal.LoadPrevious(ctx, rec.RunID, targets); err != nil {
			return 0, "", err
		}
	}

	entries, err := seal.Links(ctx, rec, signer, previous)
	if err != nil {
		return 0, "", err
	}

	// Provenance needs a subject: the declared outputs, else the products
	// of the last step. A TaskRun with neither gets links only.
	steps := rec.AllSteps()
	if len(built.Subjects) > 0 || len(steps[len(steps)-1].Products) > 0 {
		opts := attest.ProvenanceOptions{Subjects: built.Subjects, BuilderID: cfg.BuilderID, Links: seal.Digests(entries)}
		st, err := attest.Provenance(rec, opts)
		if err != nil {
			return 0, "", err
		}
		e, err := seal.Provenance(ctx, st, seal.TaskRunProvenanceName(tr.Namespace, tr.Name, keyID), rec.RunID, signer, previous, false)
		if err != nil {
			return 0, "", err
		}
		entries = append(entries, e)
	} else {
		logger.Infow("no provenance: the TaskRun declared no output and its last step has no product")
	}

	if logIndex, err = seal.Put(ctx, targets, entries); err != nil {
		return 0, "", err
	}
	// Image outputs get the provenance (the last entry when there is one).
	if last := entries[len(entries)-1]; len(built.Images) > 0 && last.Kind == store.KindProvenance {
		env, err := seal.Envelope(last)
		if err != nil {
			return 0, "", err
		}
		for _, b := range backends {
			if b.Images == nil {
				continue
			}
			for _, img := range built.Images {
				if err := b.AttachImage(ctx, img, env, signer.Public()); err != nil {
					return 0, "", fmt.Errorf("backend %s: attaching provenance to %s: %w", b.Name, img, err)
				}
			}
		}
	}
	return len(entries), logIndex, nil
}

func hasFinalizer(tr *v1.TaskRun) bool {
	return lifecycle.HasFinalizer(tr, annotations.FinalizerTaskRun)
}

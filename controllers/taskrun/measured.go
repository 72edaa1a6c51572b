package taskrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
)

// ErrMeasurement matches every *MeasurementError: what the recorder steps
// measured in the Pod cannot be signed.
var ErrMeasurement = errors.New("measured step")

// MeasurementError says why the measurement of a user's step by the
// stepseal-record-start/stop steps is refused (or could not be checked).
// The TaskRun is then not signed at all: signing it without the
// measurement would drop the materials and products the Task asked for.
type MeasurementError struct {
	// Step is the measured user step, when known.
	Step string
	// Recorder is the recorder step (status.steps name) concerned, if one.
	Recorder string
	// Reason is the shared category (reject.ErrMismatch, ErrMissing,
	// ErrUnauthorized, ErrMalformed, ErrUnavailable, ...).
	Reason *reject.Reason
	Msg    string
	Err    error
}

func (e *MeasurementError) Error() string {
	var b strings.Builder
	b.WriteString("measured step")
	if e.Step != "" {
		b.WriteString(" " + e.Step)
	}
	if e.Recorder != "" {
		b.WriteString(" (recorder step " + e.Recorder + ")")
	}
	b.WriteString(": " + e.Msg)
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Is matches ErrMeasurement and the error's Reason (and its root).
func (e *MeasurementError) Is(target error) bool {
	return target == ErrMeasurement || reject.Matches(e.Reason, target)
}

func (e *MeasurementError) Unwrap() error { return e.Err }

// PodLogs reads one container's log.
type PodLogs interface {
	Logs(ctx context.Context, namespace, pod, container string) ([]byte, error)
}

// KubePodLogs reads logs through the API server (pods/log).
type KubePodLogs struct{ Kube kubernetes.Interface }

// Logs implements PodLogs; at most twice record.MaxMeasurement bytes. A
// Pod or container that no longer exists is reject.ErrMissing (its log is
// gone for good); other failures are reject.ErrUnavailable.
func (k KubePodLogs) Logs(ctx context.Context, namespace, pod, container string) ([]byte, error) {
	limit := int64(2 * record.MaxMeasurement)
	b, err := k.Kube.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, LimitBytes: &limit}).DoRaw(ctx)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: log of %s/%s container %s: %v", reject.ErrMissing, namespace, pod, container, err)
	case err != nil:
		return nil, fmt.Errorf("%w: log of %s/%s container %s: %v", reject.ErrUnavailable, namespace, pod, container, err)
	}
	return b, nil
}

// Measured turns what the record StepActions measured in a TaskRun's Pod
// into the measured step's materials and products.
type Measured struct {
	// Images are the digests ("sha256:<hex>") of the stepseal images whose
	// recorder steps are trusted (settings record.images).
	Images []string
	// Logs reads the recorder containers' logs.
	Logs PodLogs
}

// recorder is one recorder step found in the status.
type recorder struct {
	index  int
	state  *v1.StepState
	kind   string
	digest string
	doc    *record.Measurement
}

// Apply checks the measurements of tr and puts them into built, in order:
//
//  1. Recorder steps are those with a step result STEPSEAL_MATERIALS
//     (start) or STEPSEAL_PRODUCTS (stop); a TaskRun with none is left as
//     it is.
//  2. Each recorder ran one of the Images (its status imageID digest),
//     else it is refused (reject.ErrUnauthorized): any step can name a
//     result so. With no Images configured nothing can be checked
//     (reject.ErrUnavailable).
//  3. Its log is read from the Pod and the one line whose sha256 is the
//     step result is kept: the result came from that container's own
//     termination message, the log line is only believed because of it
//     (reject.ErrMismatch/ErrMissing otherwise).
//  4. The document is of the recorder's kind and names this TaskRun's UID
//     (a document replayed from another run is reject.ErrMismatch).
//  5. Each measured step has exactly one start, right before it in
//     status.steps, and one stop, right after it; it terminated (was not
//     skipped) and is not itself a recorder.
//  6. The stop's recorded exit code equals the step's in the status.
//  7. The start's artifacts become the step's materials and the stop's its
//     products (next to what FromTaskRun found, which must agree); the
//     recorder steps are dropped from the record, as if they had not been
//     in the Task: their own results go with them, TaskRun-level
//     materials and products they carried move to the first and last
//     remaining steps.
//
// Every failure is a *MeasurementError naming the step; all but
// reject.ErrUnavailable are refusals and permanent.
func (m *Measured) Apply(ctx context.Context, tr *v1.TaskRun, built *Built) error {
	recs := recorders(tr)
	if len(recs) == 0 {
		return nil
	}
	if err := m.checkImages(recs); err != nil {
		return err
	}
	if err := m.readDocuments(ctx, tr, recs); err != nil {
		return err
	}
	pairs, err := pairUp(tr, recs)
	if err != nil {
		return err
	}
	return apply(built, recs, pairs)
}

// 1.
func recorders(tr *v1.TaskRun) []*recorder {
	var out []*recorder
	for i := range tr.Status.Steps {
		st := &tr.Status.Steps[i]
		for _, r := range st.Results {
			kind := ""
			switch r.Name {
			case record.ResultMaterials:
				kind = record.KindMaterials
			case record.ResultProducts:
				kind = record.KindProducts
			default:
				continue
			}
			out = append(out, &recorder{index: i, state: st, kind: kind, digest: strings.TrimSpace(r.Value.StringVal)})
		}
	}
	return out
}

// 2.
func (m *Measured) checkImages(recs []*recorder) error {
	for _, r := range recs {
		_, d := parseImageID(r.state.ImageID)
		if len(m.Images) == 0 {
			// Not a verdict on the Pod: this controller does not know which
			// recorder to trust (retried, then given up like any failure).
			return &MeasurementError{Recorder: r.state.Name, Reason: reject.ErrUnavailable,
				Msg: "cannot check: no stepseal recorder image is trusted (set record.images in stepseal-config)"}
		}
		if d == "" || !slices.Contains(m.Images, d) {
			return &MeasurementError{Recorder: r.state.Name, Reason: reject.ErrUnauthorized,
				Msg: fmt.Sprintf("writes %s but ran image %q, not a trusted stepseal recorder image (record.images)", resultOf(r.kind), r.state.ImageID)}
		}
	}
	return nil
}

func resultOf(kind string) string {
	if kind == record.KindMaterials {
		return record.ResultMaterials
	}
	return record.ResultProducts
}

// 3. and 4.
func (m *Measured) readDocuments(ctx context.Context, tr *v1.TaskRun, recs []*recorder) error {
	if m.Logs == nil {
		return &MeasurementError{Reason: reject.ErrUnavailable, Msg: "no Pod log reader configured"}
	}
	for _, r := range recs {
		fail := func(reason *reject.Reason, err error, format string, args ...any) error {
			return &MeasurementError{Recorder: r.state.Name, Reason: reason, Msg: fmt.Sprintf(format, args...), Err: err}
		}
		if len(r.digest) != 64 || strings.Trim(r.digest, "0123456789abcdef") != "" {
			return fail(reject.ErrMalformed, nil, "result %s %q is not a sha256", resultOf(r.kind), r.digest)
		}
		if tr.Status.PodName == "" {
			return fail(reject.ErrMissing, nil, "the TaskRun names no Pod to read the measurement from")
		}
		container := r.state.Container
		if container == "" {
			container = "step-" + r.state.Name
		}
		log, err := m.Logs.Logs(ctx, tr.Namespace, tr.Status.PodName, container)
		if err != nil {
			reason := reject.Of(err)
			if reason == nil {
				reason = reject.ErrUnavailable
			}
			return fail(reason, err, "reading the log of Pod %s container %s", tr.Status.PodName, container)
		}
		doc, err := record.FindMeasurement(log, r.digest)
		if err != nil {
			reason := reject.Of(err)
			if reason == reject.ErrMissing {
				reason = reject.ErrMismatch
			}
			return fail(reason, err, "no measurement in the log matches result %s %s", resultOf(r.kind), r.digest)
		}
		if doc.Kind != r.kind {
			return fail(reject.ErrMismatch, nil, "result %s holds a %s measurement", resultOf(r.kind), doc.Kind)
		}
		if doc.TaskRunUID != string(tr.UID) {
			return &MeasurementError{Step: doc.Step, Recorder: r.state.Name, Reason: reject.ErrMismatch,
				Msg: fmt.Sprintf("the measurement names TaskRun UID %q (%s), not this TaskRun's %s: replayed from another run", doc.TaskRunUID, doc.TaskRun, tr.UID)}
		}
		r.doc = doc
	}
	return nil
}

// pair is one measured step with its start and stop.
type pair struct {
	step        *v1.StepState
	start, stop *recorder
}

// 5. and 6.
func pairUp(tr *v1.TaskRun, recs []*recorder) (map[string]*pair, error) {
	isRecorder := map[int]bool{}
	for _, r := range recs {
		isRecorder[r.index] = true
	}
	pairs := map[string]*pair{}
	for _, r := range recs {
		p := pairs[r.doc.Step]
		if p == nil {
			p = &pair{}
			pairs[r.doc.Step] = p
		}
		slot := &p.start
		if r.kind == record.KindProducts {
			slot = &p.stop
		}
		if *slot != nil {
			return nil, &MeasurementError{Step: r.doc.Step, Recorder: r.state.Name, Reason: reject.ErrMismatch,
				Msg: fmt.Sprintf("a second %s measurement (the first by %s)", r.kind, (*slot).state.Name)}
		}
		*slot = r
	}
	for name, p := range pairs {
		fail := func(reason *reject.Reason, format string, args ...any) error {
			return &MeasurementError{Step: name, Reason: reason, Msg: fmt.Sprintf(format, args...)}
		}
		switch {
		case p.start == nil:
			return nil, fail(reject.ErrMissing, "a stop measurement (%s) without a start: add stepseal-record-start right before the step", p.stop.state.Name)
		case p.stop == nil:
			return nil, fail(reject.ErrMissing, "a start measurement (%s) without a stop: stepseal-record-stop did not run after the step (a failing step needs onError: continue for it to run)", p.start.state.Name)
		}
		i := p.start.index + 1
		if i >= len(tr.Status.Steps) || tr.Status.Steps[i].Name != name || p.stop.index != i+1 {
			return nil, fail(reject.ErrMismatch, "the measured step must run right after its start (%s) and right before its stop (%s) in status.steps", p.start.state.Name, p.stop.state.Name)
		}
		if isRecorder[i] {
			return nil, fail(reject.ErrMismatch, "a recorder step cannot be the measured step")
		}
		st := &tr.Status.Steps[i]
		if st.Terminated == nil || st.TerminationReason == stepSkipped {
			return nil, fail(reject.ErrMissing, "the step did not run, yet it has start and stop measurements")
		}
		for _, r := range []*recorder{p.start, p.stop} {
			if r.state.Terminated == nil {
				return nil, fail(reject.ErrMissing, "recorder %s did not terminate", r.state.Name)
			}
		}
		// Tekton's status times containers to the whole second, and a
		// container's exit is recorded a little after its entrypoint let
		// the next step start, so the window is checked on the recorders'
		// own times (when hashing began, whole seconds): start hashed no
		// later than the step started, and the step's container exited in
		// an earlier second than stop began hashing — stop waits for that
		// (record.SettleAfterStep), so a step still running, or that
		// released stop early by writing its own done file, is refused.
		for _, r := range []*recorder{p.start, p.stop} {
			ran := r.state.Terminated
			if at := r.doc.Time; at.Before(ran.StartedAt.Truncate(time.Second)) || at.After(ran.FinishedAt.Time) {
				return nil, fail(reject.ErrMismatch, "the %s measurement (%s) is timed %s, outside its container's run (%s to %s)",
					r.kind, r.state.Name, stamp(at), stamp(ran.StartedAt.Time), stamp(ran.FinishedAt.Time))
			}
		}
		switch at := p.stop.doc.Time; {
		case p.start.doc.Time.After(st.Terminated.StartedAt.Time):
			return nil, fail(reject.ErrMismatch, "the step did not run between its start (%s) and stop (%s): it started at %s, before the start measurement at %s",
				p.start.state.Name, p.stop.state.Name, stamp(st.Terminated.StartedAt.Time), stamp(p.start.doc.Time))
		case !st.Terminated.FinishedAt.Time.Before(at):
			return nil, fail(reject.ErrMismatch, "the step did not run between its start (%s) and stop (%s): its container exited at %s, not before the stop measurement at %s",
				p.start.state.Name, p.stop.state.Name, stamp(st.Terminated.FinishedAt.Time), stamp(at))
		}
		if got := *p.stop.doc.ExitCode; got != int(st.Terminated.ExitCode) {
			return nil, fail(reject.ErrMismatch, "the stop measurement (%s) records exit code %d, Tekton's status %d", p.stop.state.Name, got, st.Terminated.ExitCode)
		}
		p.step = st
	}
	return pairs, nil
}

// 7.
func apply(built *Built, recs []*recorder, pairs map[string]*pair) error {
	task := &built.Record.Tasks[0]
	byName := map[string]int{}
	for i, s := range task.Steps {
		byName[s.Name] = i
	}
	for name, p := range pairs {
		i, ok := byName[run.StepName(task.PipelineTask, name)]
		if !ok {
			return &MeasurementError{Step: name, Reason: reject.ErrMissing, Msg: "the step is not in the record"}
		}
		s := &task.Steps[i]
		for _, m := range []struct {
			dst  run.Artifacts
			src  run.Artifacts
			what string
		}{{s.Materials, p.start.doc.Artifacts, "material"}, {s.Products, p.stop.doc.Artifacts, "product"}} {
			for uri, ds := range m.src {
				if old, ok := m.dst[uri]; ok && old["sha256"] != ds["sha256"] {
					return &MeasurementError{Step: name, Reason: reject.ErrMismatch,
						Msg: fmt.Sprintf("%s %s: measured sha256 %s, the status says %s", m.what, uri, ds["sha256"], old["sha256"])}
				}
				m.dst[uri] = ds
			}
		}
	}
	dropRecorders(built, recs)
	return nil
}

// DropRecorderSteps removes the record StepActions' steps (those with a
// STEPSEAL_MATERIALS or STEPSEAL_PRODUCTS step result) from built, as
// Measured.Apply does once it has checked them, without reading their
// measurements: for a caller that needs the steps the TaskRun controller
// signed links of (the PipelineRun controller, checking that every
// child's links are stored), not what they measured.
func DropRecorderSteps(tr *v1.TaskRun, built *Built) {
	if recs := recorders(tr); len(recs) > 0 {
		dropRecorders(built, recs)
	}
}

// dropRecorders is step 7's dropping of the recorder steps.
func dropRecorders(built *Built, recs []*recorder) {
	task := &built.Record.Tasks[0]
	drop := map[string]bool{}
	for _, r := range recs {
		drop[run.StepName(task.PipelineTask, r.state.Name)] = true
	}
	var kept []run.Step
	carriedM, carriedP := run.Artifacts{}, run.Artifacts{}
	for _, s := range task.Steps {
		if !drop[s.Name] {
			kept = append(kept, s)
			continue
		}
		own := "steps/" + strings.TrimPrefix(s.Name, task.PipelineTask+".") + "/results/"
		for uri, ds := range s.Materials {
			carriedM[uri] = ds
		}
		for uri, ds := range s.Products {
			if !strings.HasPrefix(uri, own) {
				carriedP[uri] = ds
			}
		}
	}
	if len(kept) > 0 {
		for uri, ds := range carriedM {
			kept[0].Materials[uri] = ds
		}
		for uri, ds := range carriedP {
			kept[len(kept)-1].Products[uri] = ds
		}
	}
	task.Steps = kept
}

// stamp formats a status or measurement time.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

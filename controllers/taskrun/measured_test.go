package taskrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/annotations"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/internal/controllertest"
	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/store"
)

const (
	recorderDigest = "sha256:5555555555555555555555555555555555555555555555555555555555555555"
	recorderImage  = "registry.example/stepseal@" + recorderDigest
	podName        = "tr-pod"
	sha1           = "1111111111111111111111111111111111111111111111111111111111111111"
	sha2           = "2222222222222222222222222222222222222222222222222222222222222222"
)

// fakeLogs is the Pod's logs: container -> log; a missing container is
// the error err (nil: reject.ErrMissing, as for a deleted Pod).
type fakeLogs struct {
	logs map[string][]byte
	err  error
}

func (f *fakeLogs) Logs(_ context.Context, ns, pod, container string) ([]byte, error) {
	if pod != podName {
		return nil, fmt.Errorf("%w: pod %s", reject.ErrMissing, pod)
	}
	if f.err != nil {
		return nil, f.err
	}
	b, ok := f.logs[container]
	if !ok {
		return nil, fmt.Errorf("%w: container %s", reject.ErrMissing, container)
	}
	return b, nil
}

// measuredRun is a finished TaskRun of steps measure-materials, build,
// measure-products as Tekton reports it (the recorders' results in
// status.steps, the user step's exit code), and the Pod's logs: the
// recorders printed their documents among other lines.
type measuredRun struct {
	tr         *v1.TaskRun
	logs       *fakeLogs
	start, end *record.Measurement
}

func at(sec int) metav1.Time {
	return metav1.NewTime(time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC))
}

func step(name, image string, start, end int, exit int32) v1.StepState {
	return v1.StepState{Name: name, Container: "step-" + name, ImageID: image,
		ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: exit, StartedAt: at(start), FinishedAt: at(end)}}}
}

func newMeasuredRun(t *testing.T) *measuredRun {
	t.Helper()
	exit := 0
	m := &measuredRun{
		start: &record.Measurement{Type: record.MeasurementType, Kind: record.KindMaterials, Step: "build", TaskRun: "tr", TaskRunUID: "uid-1",
			Artifacts: run.Artifacts{"source/main.go": {"sha256": sha1}}, Time: at(1).Time},
		end: &record.Measurement{Type: record.MeasurementType, Kind: record.KindProducts, Step: "build", TaskRun: "tr", TaskRunUID: "uid-1",
			Artifacts: run.Artifacts{"source/main.go": {"sha256": sha1}, "source/out/app": {"sha256": sha2}}, ExitCode: &exit, Time: at(7).Time},
		logs: &fakeLogs{logs: map[string][]byte{}},
	}
	m.tr = controllertest.Minimal(func(tr *v1.TaskRun) {
		tr.Status.PodName = podName
		tr.Status.Steps = []v1.StepState{
			step("measure-materials", recorderImage, 1, 2, 0),
			step("build", "docker.io/library/busybox@"+controllertest.DigestA, 3, 5, 0),
			step("measure-products", recorderImage, 6, 7, 0),
		}
		tr.Status.TaskSpec = &v1.TaskSpec{Steps: []v1.Step{{Name: "measure-materials"}, {Name: "build", Image: "busybox", Script: "make"}, {Name: "measure-products"}}}
	})
	m.emit(t, 0, record.ResultMaterials, m.start)
	m.emit(t, 2, record.ResultProducts, m.end)
	return m
}

// emit logs doc in step i's container and sets its result to the digest.
func (m *measuredRun) emit(t *testing.T, i int, result string, doc *record.Measurement) {
	t.Helper()
	line, digest, err := doc.Encode()
	if err != nil {
		t.Fatal(err)
	}
	st := &m.tr.Status.Steps[i]
	st.Results = []v1.TaskRunStepResult{{Name: result, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(digest)}}
	m.logs.logs[st.Container] = []byte("2026/01/01 entrypoint noise\n" + string(line) + "\n")
}

func (m *measuredRun) apply(t *testing.T, images ...string) (*Built, error) {
	t.Helper()
	built, err := FromTaskRun(m.tr)
	if err != nil {
		t.Fatal(err)
	}
	if images == nil {
		images = []string{recorderDigest}
	}
	return built, (&Measured{Images: images, Logs: m.logs}).Apply(context.Background(), m.tr, built)
}

func TestMeasuredGivesTheStepItsArtifacts(t *testing.T) {
	m := newMeasuredRun(t)
	built, err := m.apply(t)
	if err != nil {
		t.Fatal(err)
	}
	steps := built.Record.Tasks[0].Steps
	if len(steps) != 1 || steps[0].Name != "tr.build" {
		t.Fatalf("steps %+v, want only tr.build (the recorders get no link)", steps)
	}
	s := steps[0]
	if len(s.Materials) != 1 || s.Materials["source/main.go"]["sha256"] != sha1 {
		t.Errorf("materials %v", s.Materials)
	}
	if len(s.Products) != 2 || s.Products["source/out/app"]["sha256"] != sha2 {
		t.Errorf("products %v", s.Products)
	}
	if s.ImageDigest != controllertest.DigestA || s.Script != "make" {
		t.Errorf("the user step's own record changed: %+v", s)
	}
}

// TestMeasuredTaskRunResultsStay: a TaskRun result is a product of the last
// step that ran; with the stop dropped that is the measured step.
func TestMeasuredTaskRunResultsStay(t *testing.T) {
	m := newMeasuredRun(t)
	m.tr.Status.Results = []v1.TaskRunResult{{Name: "digest", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("x")}}
	built, err := m.apply(t)
	if err != nil {
		t.Fatal(err)
	}
	p := built.Record.Tasks[0].Steps[0].Products
	if _, ok := p[TaskResultPrefix+"digest"]; !ok {
		t.Errorf("products %v lack the TaskRun result", p)
	}
	for uri := range p {
		if strings.Contains(uri, "measure-") {
			t.Errorf("a recorder's own result %s became a product of the user step", uri)
		}
	}
}

// TestMeasuredStepExitAfterStopStarted: the kubelet times a container's
// exit a little after its entrypoint let the next step start, so in
// Tekton's whole-second status the measured step may finish in the second
// stop started (and start finish after the step started); what counts is
// that the step's container exited before the second stop began hashing.
func TestMeasuredStepExitAfterStopStarted(t *testing.T) {
	m := newMeasuredRun(t)
	s := m.tr.Status.Steps
	s[0].Terminated.FinishedAt = at(3) // start's container exit timed after build started at 3
	s[1].Terminated.FinishedAt = at(6) // build's exit timed in the second stop started (6); stop hashed at 7
	if _, err := m.apply(t); err != nil {
		t.Fatal(err)
	}
}

func TestMeasuredWithoutRecordersUnchanged(t *testing.T) {
	tr := controllertest.Minimal(nil)
	built, err := FromTaskRun(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Measured{}).Apply(context.Background(), tr, built); err != nil || len(built.Record.Tasks[0].Steps) != 1 {
		t.Fatalf("%v, %+v", err, built.Record.Tasks[0].Steps)
	}
}

// TestMeasuredForgeriesRefused: each forgery of the pod's measurement is
// refused with a typed error naming the step, and permanently (the
// TaskRun is never signed); a log that cannot be read now is retried.
func TestMeasuredForgeriesRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		forge     func(t *testing.T, m *measuredRun)
		images    []string
		reason    *reject.Reason
		permanent bool
		msg       string
	}{
		{name: "log edited after the result (digest mismatch)", forge: func(t *testing.T, m *measuredRun) {
			c := m.tr.Status.Steps[2].Container
			m.logs.logs[c] = []byte(strings.Replace(string(m.logs.logs[c]), sha2, sha1, 1))
		}, reason: reject.ErrMismatch, permanent: true, msg: "recorder step measure-products"},
		{name: "a forged document in place of the measured one", forge: func(t *testing.T, m *measuredRun) {
			forged := *m.end
			forged.Artifacts = run.Artifacts{"source/out/app": {"sha256": sha1}}
			line, _, _ := forged.Encode()
			c := m.tr.Status.Steps[2].Container
			m.logs.logs[c] = append(line, '\n') // only the forged line: the result's document is gone
		}, reason: reject.ErrMismatch, permanent: true, msg: "no measurement in the log matches"},
		{name: "document replayed from another TaskRun", forge: func(t *testing.T, m *measuredRun) {
			other := *m.end
			other.TaskRunUID, other.TaskRun = "uid-other", "other"
			m.emit(t, 2, record.ResultProducts, &other)
		}, reason: reject.ErrMismatch, permanent: true, msg: `names TaskRun UID "uid-other"`},
		{name: "exit code lie", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[1].Terminated.ExitCode = 2 // the step failed (onError: continue), stop claims 0
		}, reason: reject.ErrMismatch, permanent: true, msg: "records exit code 0, Tekton's status 2"},
		{name: "missing stop", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[2].Results = nil
			m.tr.Status.Steps[2].TerminationReason = "Skipped"
		}, reason: reject.ErrMissing, permanent: true, msg: "measured step build: a start measurement (measure-materials) without a stop"},
		{name: "missing start", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[0].Results = nil
		}, reason: reject.ErrMissing, permanent: true, msg: "without a start"},
		{name: "recorder result from another image", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[2].ImageID = "docker.io/library/busybox@" + controllertest.DigestA
		}, reason: reject.ErrUnauthorized, permanent: true, msg: "not a trusted stepseal recorder image"},
		{name: "no recorder image configured", images: []string{}, reason: reject.ErrUnavailable, permanent: false, msg: "cannot check: no stepseal recorder image is trusted"},
		{name: "materials document under the products result", forge: func(t *testing.T, m *measuredRun) {
			m.emit(t, 2, record.ResultProducts, m.start)
		}, reason: reject.ErrMismatch, permanent: true, msg: "holds a materials measurement"},
		{name: "start and stop not around the step", forge: func(t *testing.T, m *measuredRun) {
			s := m.tr.Status.Steps
			extra := step("sneak", "docker.io/library/busybox@"+controllertest.DigestA, 5, 6, 0)
			m.tr.Status.Steps = []v1.StepState{s[0], s[1], extra, s[2]}
		}, reason: reject.ErrMismatch, permanent: true, msg: "right after its start"},
		{name: "measured step ran outside the window", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[1].Terminated.FinishedAt = at(9)
		}, reason: reject.ErrMismatch, permanent: true, msg: "did not run between"},
		{name: "measured step exited in the second stop began hashing", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[1].Terminated.FinishedAt = at(7) // it may have written after stop hashed
		}, reason: reject.ErrMismatch, permanent: true, msg: "its container exited at 2026-01-01T00:00:07Z, not before the stop measurement at 2026-01-01T00:00:07Z"},
		{name: "stop measurement timed outside its container", forge: func(t *testing.T, m *measuredRun) {
			late := *m.end
			late.Time = at(9).Time
			m.emit(t, 2, record.ResultProducts, &late)
		}, reason: reject.ErrMismatch, permanent: true, msg: "the products measurement (measure-products) is timed 2026-01-01T00:00:09Z, outside its container's run"},
		{name: "step started before the start measurement", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.Steps[0].Terminated.FinishedAt = at(4)
			late := *m.start
			late.Time = at(4).Time
			m.emit(t, 0, record.ResultMaterials, &late)
		}, reason: reject.ErrMismatch, permanent: true, msg: "it started at 2026-01-01T00:00:03Z, before the start measurement at 2026-01-01T00:00:04Z"},
		{name: "pod gone (log missing)", forge: func(t *testing.T, m *measuredRun) {
			m.tr.Status.PodName = "deleted-pod"
		}, reason: reject.ErrMissing, permanent: true, msg: "reading the log of Pod deleted-pod"},
		{name: "log API down", forge: func(t *testing.T, m *measuredRun) {
			m.logs.err = fmt.Errorf("%w: connection refused", reject.ErrUnavailable)
		}, reason: reject.ErrUnavailable, permanent: false, msg: "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMeasuredRun(t)
			if tc.forge != nil {
				tc.forge(t, m)
			}
			images := tc.images
			if images == nil {
				images = []string{recorderDigest}
			}
			built, err := FromTaskRun(m.tr)
			if err != nil {
				t.Fatal(err)
			}
			err = (&Measured{Images: images, Logs: m.logs}).Apply(context.Background(), m.tr, built)
			if !errors.Is(err, ErrMeasurement) || !errors.Is(err, tc.reason) {
				t.Fatalf("err = %v, want ErrMeasurement and %v", err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to say %q", err, tc.msg)
			}
			if got := (&Kind{}).Permanent(err); got != tc.permanent {
				t.Errorf("Permanent = %v, want %v", got, tc.permanent)
			}
		})
	}
}

// TestReconcileMeasuredTaskRun: through the controller's lifecycle, a
// measured TaskRun is signed with the measured artifacts in the user
// step's link; a forged one is marked signed=failed at once, naming the
// step, with nothing stored.
func TestReconcileMeasuredTaskRun(t *testing.T) {
	m := newMeasuredRun(t)
	f := newFixture(t, map[string]string{settings.KeyRecordImages: recorderImage}, m.tr)
	f.kind.PodLogs = m.logs
	if err := f.reconcile(m.tr); err != nil {
		t.Fatal(err)
	}
	if got := f.get(m.tr); got.Annotations[annotations.Signed] != annotations.SignedTrue {
		t.Fatalf("annotations %v", got.Annotations)
	}
	links := f.Entries(store.KindLink)
	if len(links) != 1 {
		t.Fatalf("%d links, want 1 (the recorders get none)", len(links))
	}
	var mb in_toto.Metablock
	if err := json.Unmarshal(links[0].Data, &mb); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(mb.Signed)
	var l in_toto.Link
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	if l.Name != "tr.build" || l.Products["source/out/app"]["sha256"] != sha2 || l.Materials["source/main.go"]["sha256"] != sha1 {
		t.Errorf("link %s: materials %v products %v", l.Name, l.Materials, l.Products)
	}

	forged := newMeasuredRun(t)
	forged.tr.Name, forged.tr.UID = "forged", "uid-2"
	forged.start.TaskRunUID, forged.end.TaskRunUID = "uid-2", "uid-2"
	forged.emit(t, 0, record.ResultMaterials, forged.start)
	forged.emit(t, 2, record.ResultProducts, forged.end)
	forged.tr.Status.Steps[1].Terminated.ExitCode = 1
	g := newFixture(t, map[string]string{settings.KeyRecordImages: recorderImage}, forged.tr)
	g.kind.PodLogs = forged.logs
	_ = g.reconcile(forged.tr)
	got := g.get(forged.tr)
	if got.Annotations[annotations.Signed] != annotations.SignedFailed || !strings.Contains(got.Annotations[annotations.Error], "measured step build") {
		t.Errorf("forged TaskRun: annotations %v, want signed=failed naming step build", got.Annotations)
	}
	if n := len(g.Entries("")); n != 0 {
		t.Errorf("%d entries stored for a refused TaskRun", n)
	}
}

// TestKubePodLogsRealAPI: pods/log through a real kube-apiserver. A Pod
// that does not exist has no log for good (reject.ErrMissing: the TaskRun
// is refused). A Pod on no node gets an empty log from the apiserver, not
// an error: no line then matches the result, and Apply refuses.
func TestKubePodLogsRealAPI(t *testing.T) {
	api := controllertest.StartAPI(t, time.Minute, nil)
	logs := KubePodLogs{Kube: api.Kube}
	_, err := logs.Logs(api.Ctx, api.NS, "no-such-pod", "step-x")
	if !errors.Is(err, reject.ErrMissing) {
		t.Errorf("absent Pod: %v, want ErrMissing", err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: api.NS},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "step-x", Image: "busybox"}}}}
	if _, err := api.Kube.CoreV1().Pods(api.NS).Create(api.Ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := logs.Logs(api.Ctx, api.NS, "pending", "step-x")
	if err != nil || len(b) != 0 {
		t.Errorf("Pod on no node: %q, %v, want an empty log", b, err)
	}
	if _, err := record.FindMeasurement(b, sha1); !errors.Is(err, reject.ErrMissing) {
		t.Errorf("empty log: %v", err)
	}
}

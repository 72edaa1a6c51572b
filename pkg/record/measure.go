package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
)

// MeasurementType is the _type of a measurement document.
const MeasurementType = "https://stepseal.dev/measurement/v1"

// The two kinds of measurement: before the measured step (start) and after it (stop).
const (
	KindMaterials = "materials"
	KindProducts  = "products"
)

// Step result names the record StepActions write the measurement's sha256
// to; the controller recognises a recorder step by them (and its image).
const (
	ResultMaterials = "STEPSEAL_MATERIALS"
	ResultProducts  = "STEPSEAL_PRODUCTS"
)

// MaxMeasurement bounds a measurement document (and so the log the
// controller reads for it).
const MaxMeasurement = 16 << 20

// ErrBadMeasurement: a measurement document or its inputs do not parse or
// violate the format (reject.ErrMalformed).
var ErrBadMeasurement = reject.Sentinel(reject.ErrMalformed, "bad measurement")

// Measurement is what the record StepActions measure in the pod, around a
// user's step they do not change: the workspace files before it
// (materials, `stepseal record start`) or after it and its exit code
// (products, `stepseal record stop`). It carries no signature: the
// recorder step prints it to its log and writes its sha256 as a step
// result, which Tekton copies into the TaskRun status from that
// container's own termination message; the controller keeps the logged
// document whose digest is that result and signs the step's link.
type Measurement struct {
	Type string `json:"_type"`
	// Kind is KindMaterials or KindProducts.
	Kind string `json:"kind"`
	// Step is the Task's name of the measured (user) step.
	Step string `json:"step"`
	// TaskRun and TaskRunUID identify the run ($(context.taskRun.*)).
	TaskRun    string `json:"taskRun"`
	TaskRunUID string `json:"taskRunUID"`
	// Artifacts are the files hashed: "<workspace>/<relative path>".
	Artifacts run.Artifacts `json:"artifacts"`
	// ExitCode is the measured step's exit code (products only), read from
	// the file Tekton writes for it.
	ExitCode *int `json:"exitCode,omitempty"`
	// Time is when hashing began, in whole seconds (UTC). For products,
	// stop first waits out StepExitMargin and the rest of that second
	// (SettleAfterStep), so that the measured step's container — which
	// Tekton's status times to the whole second — had exited in an
	// earlier second than Time.
	Time time.Time `json:"time"`
}

// MeasureOptions configure Measure.
type MeasureOptions struct {
	// Kind is KindMaterials or KindProducts.
	Kind string
	// Step is the measured step's name in the Task.
	Step string
	// TaskRun and TaskRunUID identify the run.
	TaskRun, TaskRunUID string
	// Paths are "NAME=DIR" (the files under DIR recorded as
	// "NAME/<relative path>", NAME being the workspace name the layout
	// uses, as the local runner names workspace files) or an absolute path
	// (recorded as in-toto-run names it).
	Paths []string
	// Exclude holds in-toto-run --exclude patterns.
	Exclude []string
	// ExitCodeFile is the file Tekton writes the measured step's exit code
	// to ($(steps.step-<name>.exitCode.path)); products only, required there.
	ExitCodeFile string
}

// StepExitMargin is how long after stop starts the measured step's
// container may still be recorded as exiting. Tekton's entrypoint releases
// the next step when the previous one's command has exited and before its
// container has: the kubelet's exit time (status.steps[].terminated
// .finishedAt, whole seconds) can lie a little after stop's own start.
const StepExitMargin = 500 * time.Millisecond

// SettleAfterStep returns when it is safe for stop to begin hashing: at the
// first whole second after now+StepExitMargin. A measured step that exited
// no later than StepExitMargin after now has a (truncated) finishedAt
// strictly before that second, which is the measurement's Time; a step
// still running when hashing begins finishes in that second or later. The
// controller refuses a step whose finishedAt is not before Time, so the
// one-second resolution of Tekton's status leaves no window in which the
// step could change its products after they were measured. It waits
// between StepExitMargin and one second more (one second on average).
func SettleAfterStep(ctx context.Context, now time.Time) (time.Time, error) {
	at := now.Add(StepExitMargin).Truncate(time.Second).Add(time.Second)
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-t.C:
		return time.Now(), nil
	}
}

// stepName is Tekton's rule for step names (a DNS-1123 label).
var stepName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// workspaceName: what a Tekton workspace (or pipeline workspace) may be called.
var workspaceName = regexp.MustCompile(`^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$`)

// Measure hashes opts.Paths and returns the measurement. Every value that
// came from a Task's params is checked first and refused, naming the
// value, if it is not a step name, a workspace binding or an absolute
// path: params arrive as arguments, never through a shell, and are data.
func Measure(ctx context.Context, opts MeasureOptions) (*Measurement, error) {
	if opts.Kind != KindMaterials && opts.Kind != KindProducts {
		return nil, fmt.Errorf("%w: kind %q", ErrBadMeasurement, opts.Kind)
	}
	if len(opts.Step) > 63 || !stepName.MatchString(opts.Step) {
		return nil, fmt.Errorf("%w: step %q is not a Tekton step name", ErrBadMeasurement, opts.Step)
	}
	if opts.TaskRunUID == "" {
		return nil, fmt.Errorf("%w: step %s: no TaskRun UID", ErrBadMeasurement, opts.Step)
	}
	begin := time.Now()
	if opts.Kind == KindProducts {
		var err error
		if begin, err = SettleAfterStep(ctx, begin); err != nil {
			return nil, err
		}
	}
	m := &Measurement{Type: MeasurementType, Kind: opts.Kind, Step: opts.Step, TaskRun: opts.TaskRun,
		TaskRunUID: opts.TaskRunUID, Artifacts: run.Artifacts{}, Time: begin.UTC().Truncate(time.Second)}
	hopts := artifact.Options{Exclude: opts.Exclude}
	for _, p := range opts.Paths {
		name, dir, named := strings.Cut(p, "=")
		var a run.Artifacts
		var err error
		switch {
		case named && workspaceName.MatchString(name) && filepath.IsAbs(dir):
			a, err = artifact.Hash(ctx, dir, name, hopts)
		case !named && filepath.IsAbs(p):
			a, err = artifact.HashPaths(ctx, []string{p}, hopts)
		default:
			return nil, fmt.Errorf("%w: step %s: path %q is neither NAME=/absolute/dir nor an absolute path", ErrBadMeasurement, opts.Step, p)
		}
		if err != nil {
			return nil, fmt.Errorf("measuring %s of step %s: %w", opts.Kind, opts.Step, err)
		}
		for k, v := range a {
			m.Artifacts[k] = v
		}
	}
	if opts.Kind == KindProducts {
		if opts.ExitCodeFile == "" {
			return nil, fmt.Errorf("%w: step %s: no exit code file", ErrBadMeasurement, opts.Step)
		}
		code, err := readExitCode(opts.ExitCodeFile)
		if err != nil {
			return nil, fmt.Errorf("step %s: %w", opts.Step, err)
		}
		m.ExitCode = &code
	} else if opts.ExitCodeFile != "" {
		return nil, fmt.Errorf("%w: step %s: an exit code belongs to the products (stop), not the materials", ErrBadMeasurement, opts.Step)
	}
	return m, nil
}

func readExitCode(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("exit code: %w", err)
	}
	defer f.Close()
	b := make([]byte, 32)
	n, _ := f.Read(b)
	code, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0, fmt.Errorf("%w: exit code file %s holds %q", ErrBadMeasurement, path, b[:n])
	}
	return code, nil
}

// Encode returns the document as one line of JSON (no newline) and the
// hex sha256 of exactly those bytes: the recorder prints the line and
// writes the digest as its step result.
func (m *Measurement) Encode() ([]byte, string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	d := sha256.Sum256(b)
	return b, hex.EncodeToString(d[:]), nil
}

// ParseMeasurement parses one document, strictly: unknown fields, a wrong
// _type or kind, a bad step name, trailing data or an exit code on
// materials are refused (ErrBadMeasurement).
func ParseMeasurement(b []byte) (*Measurement, error) {
	if len(b) > MaxMeasurement {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadMeasurement, len(b), MaxMeasurement)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Measurement
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMeasurement, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrBadMeasurement)
	}
	switch {
	case m.Type != MeasurementType:
		return nil, fmt.Errorf("%w: _type %q", ErrBadMeasurement, m.Type)
	case m.Kind != KindMaterials && m.Kind != KindProducts:
		return nil, fmt.Errorf("%w: kind %q", ErrBadMeasurement, m.Kind)
	case !stepName.MatchString(m.Step) || len(m.Step) > 63:
		return nil, fmt.Errorf("%w: step %q", ErrBadMeasurement, m.Step)
	case m.TaskRunUID == "":
		return nil, fmt.Errorf("%w: step %s: no TaskRun UID", ErrBadMeasurement, m.Step)
	case m.Kind == KindProducts && m.ExitCode == nil:
		return nil, fmt.Errorf("%w: step %s: products without the step's exit code", ErrBadMeasurement, m.Step)
	case m.Kind == KindMaterials && m.ExitCode != nil:
		return nil, fmt.Errorf("%w: step %s: materials with an exit code", ErrBadMeasurement, m.Step)
	}
	for uri, ds := range m.Artifacts {
		if uri == "" || len(ds) == 0 {
			return nil, fmt.Errorf("%w: step %s: artifact %q without digest", ErrBadMeasurement, m.Step, uri)
		}
		for alg, d := range ds {
			if alg != "sha256" || len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
				return nil, fmt.Errorf("%w: step %s: artifact %s: digest %s:%q", ErrBadMeasurement, m.Step, uri, alg, d)
			}
		}
	}
	if m.Artifacts == nil {
		m.Artifacts = run.Artifacts{}
	}
	return &m, nil
}

// FindMeasurement returns the document among the lines of log whose sha256
// is digest (hex), parsed, or an error when no line has it (reject.ErrMissing)
// or that line does not parse.
func FindMeasurement(log []byte, digest string) (*Measurement, error) {
	for len(log) > 0 {
		line := log
		if i := bytes.IndexByte(log, '\n'); i >= 0 {
			line, log = log[:i], log[i+1:]
		} else {
			log = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		d := sha256.Sum256(line)
		if hex.EncodeToString(d[:]) == digest {
			return ParseMeasurement(line)
		}
	}
	return nil, errNoDocument
}

var errNoDocument = reject.Sentinel(reject.ErrMissing, "no line of the log has the digest the step result records")

// Emit measures (Measure), prints the document as one line to log (the
// recorder step's stdout, which the controller reads back) and writes its
// hex sha256 to resultFile ($(step.results.<name>.path)). It returns the
// measurement.
func Emit(ctx context.Context, opts MeasureOptions, log io.Writer, resultFile string) (*Measurement, error) {
	if resultFile == "" {
		return nil, fmt.Errorf("%w: step %s: no result file", ErrBadMeasurement, opts.Step)
	}
	m, err := Measure(ctx, opts)
	if err != nil {
		return nil, err
	}
	line, digest, err := m.Encode()
	if err != nil {
		return nil, err
	}
	if _, err := log.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("step %s: writing the measurement: %w", opts.Step, err)
	}
	if err := os.WriteFile(resultFile, []byte(digest), 0o644); err != nil {
		return nil, fmt.Errorf("step %s: writing the measurement's digest: %w", opts.Step, err)
	}
	return m, nil
}

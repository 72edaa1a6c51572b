package run

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// DigestSet maps a hash algorithm name ("sha256") to a lowercase hex digest,
// the shape in-toto links and SLSA statements use.
type DigestSet map[string]string

// Artifacts maps an artifact URI to its digests. For workspace files the URI is
// "<pipeline workspace>/<slash-separated path inside it>".
type Artifacts map[string]DigestSet

// Names returns the artifact URIs in sorted order.
func (a Artifacts) Names() []string {
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SourceLocal marks records of the local runner, whose steps run as host
// processes: their images are recorded, not pulled.
const SourceLocal = "stepseal/localrun"

// Record is what one run of a Pipeline (or of a single Task) did.
type Record struct {
	// Pipeline is the name of the Pipeline (or Task, for a lone TaskRun).
	Pipeline string `json:"pipeline"`
	// RunID identifies this run (PipelineRun UID or a random local ID). Every
	// link of the run carries it, so links cannot be mixed between runs.
	RunID string `json:"runID"`
	// Namespace is the Kubernetes namespace, empty for local runs.
	Namespace string `json:"namespace,omitempty"`
	// Source says what produced the record: "stepseal/localrun" or "stepseal/controller".
	Source     string            `json:"source"`
	Params     map[string]string `json:"params,omitempty"`
	StartedAt  time.Time         `json:"startedAt"`
	FinishedAt time.Time         `json:"finishedAt"`
	Tasks      []Task            `json:"tasks"`
	// Results are the pipeline-level results.
	Results map[string]string `json:"results,omitempty"`
}

// Task is one executed pipeline task (a TaskRun).
type Task struct {
	// PipelineTask is the task's name inside the Pipeline.
	PipelineTask string `json:"pipelineTask"`
	// TaskRef is the referenced Task's name, empty for an inline taskSpec.
	TaskRef        string            `json:"taskRef,omitempty"`
	TaskRun        string            `json:"taskRun,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Params         map[string]string `json:"params,omitempty"`
	Steps          []Step            `json:"steps"`
	Results        map[string]string `json:"results,omitempty"`
	Skipped        bool              `json:"skipped,omitempty"`
	SkipReason     string            `json:"skipReason,omitempty"`
	// Attempts is how many times the task ran: 1 + the retries it took
	// (pipeline task or TaskRun retries); Steps are the last attempt's.
	// Zero for a task that did not run.
	Attempts int `json:"attempts,omitempty"`
	// Skip is what the orchestrator saw when it skipped the task, for the
	// skip record of each of its steps (nil when the task ran, or was
	// skipped for a reason no skip record is written for).
	Skip *Skip `json:"skip,omitempty"`
}

// Skip is why the orchestrator (the local runner, the PipelineRun
// controller) skipped a pipeline task, as a skip record carries it: Tekton's
// reason, the task's when expressions with their resolved inputs, or the
// parent whose skip cascaded.
type Skip struct {
	// Reason is Tekton's SkippingReason ("When Expressions evaluated to
	// false", "Parent Tasks were skipped", "Results were missing").
	Reason string `json:"reason"`
	// When are the task's when expressions, for a when-expression skip.
	When []When `json:"when,omitempty"`
	// Parent is the skipped task whose skip cascaded (parent skipped,
	// results missing).
	Parent string `json:"parent,omitempty"`
}

// When is one when expression: as the Pipeline writes it (Input, Values)
// and as the orchestrator resolved it (ResolvedInput, ResolvedValues). A
// CEL expression has CEL set and its evaluated result in CELResult.
type When struct {
	Input          string   `json:"input,omitempty"`
	Operator       string   `json:"operator,omitempty"`
	Values         []string `json:"values,omitempty"`
	CEL            string   `json:"cel,omitempty"`
	ResolvedInput  string   `json:"resolvedInput,omitempty"`
	ResolvedValues []string `json:"resolvedValues,omitempty"`
	CELResult      *bool    `json:"celResult,omitempty"`
}

// Step is one executed container (Tekton step) of a Task.
type Step struct {
	// Name is "<pipelineTask>.<step>", the in-toto step name.
	Name  string `json:"name"`
	Image string `json:"image"`
	// ImageDigest is the digest of the image that ran ("sha256:..."), empty
	// when the image was not pulled (local runs).
	ImageDigest string   `json:"imageDigest,omitempty"`
	Command     []string `json:"command,omitempty"`
	Args        []string `json:"args,omitempty"`
	// Script is the step's script after substitution; ScriptDigest its sha256.
	Script       string            `json:"-"`
	ScriptDigest string            `json:"scriptDigest,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Materials    Artifacts         `json:"materials"`
	Products     Artifacts         `json:"products"`
	ExitCode     int               `json:"exitCode"`
	// TimedOut is set when a step or task timeout killed the step: Tekton
	// fails such a step even when it may fail (onError: continue).
	TimedOut   bool              `json:"timedOut,omitempty"`
	StartedAt  time.Time         `json:"startedAt"`
	FinishedAt time.Time         `json:"finishedAt"`
	Stdout     DigestSet         `json:"stdout,omitempty"`
	Stderr     DigestSet         `json:"stderr,omitempty"`
	Results    map[string]string `json:"results,omitempty"`
	// Skip is set on the steps of a skipped task: the step did not run,
	// and its link is a skip record (attest.Link) signed by the
	// orchestrator.
	Skip *Skip `json:"skip,omitempty"`
}

// StepName joins a pipeline task and a step into the in-toto step name.
func StepName(pipelineTask, step string) string {
	return pipelineTask + "." + step
}

// SplitStepName is the inverse of StepName.
func SplitStepName(name string) (pipelineTask, step string, err error) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return "", "", fmt.Errorf("step name %q is not <pipelineTask>.<step>", name)
	}
	return name[:i], name[i+1:], nil
}

// ExecutedCommand is the command a step ran, as recorded in its link: the
// command and args, or for a script step the interpreter and the script.
func (s Step) ExecutedCommand() []string {
	if s.Script != "" || s.ScriptDigest != "" {
		return ScriptCommand(s.Script)
	}
	out := make([]string, 0, len(s.Command)+len(s.Args))
	out = append(out, s.Command...)
	return append(out, s.Args...)
}

// ScriptCommand is how a Tekton script step is described in its link: the
// shebang line's interpreter (default /bin/sh), "-c", and the script text.
func ScriptCommand(script string) []string {
	interp := []string{"/bin/sh"}
	if strings.HasPrefix(script, "#!") {
		line, _, _ := strings.Cut(script[2:], "\n")
		if f := strings.Fields(line); len(f) > 0 {
			interp = f
		}
	}
	return append(interp, "-c", script)
}

// AllSteps returns every step of the record in execution order.
func (r *Record) AllSteps() []Step {
	var out []Step
	for _, t := range r.Tasks {
		out = append(out, t.Steps...)
	}
	return out
}

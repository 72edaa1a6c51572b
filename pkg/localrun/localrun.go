package localrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// Errors callers branch on with errors.Is; each also matches its reason in
// stepseal's shared vocabulary (pkg/reject).
var (
	// ErrInvalid: the pipeline cannot run as given (unknown or missing param,
	// wrong param type, unbound workspace, unresolvable substitution, a
	// feature the local runner does not support, a script that cannot be
	// written). Returned before the affected task runs anything
	// (reject.ErrMalformed).
	ErrInvalid = reject.Sentinel(reject.ErrMalformed, "invalid pipeline run")
	// ErrStepFailed: a step exited non-zero or could not be started; the
	// error is a *StepError. The same value as record.ErrStepFailed.
	ErrStepFailed = record.ErrStepFailed
	// ErrTimeout: a step or task timeout expired; the error is a *StepError.
	// The same value as record.ErrTimeout.
	ErrTimeout = record.ErrTimeout
	// ErrResult: a task result is larger than MaxResultSize or does not
	// parse as its declared type, or a pipeline result cannot be computed
	// (reject.ErrMalformed).
	ErrResult = reject.Sentinel(reject.ErrMalformed, "invalid result")
)

// MaxResultSize caps each task result file, like Tekton's default 4 KiB
// result limit; a larger result fails the task.
const MaxResultSize = 4096

// StepError is returned when a step fails. Its link was still written (exit
// code in the byproducts) and the record returned with it includes the step.
type StepError = record.StepError

// Options configure Run.
type Options struct {
	// Params are the PipelineRun's parameters. Array and object parameters
	// are given as JSON (`["a","b"]`, `{"k":"v"}`). With a run file
	// (spec.Run) they override the run's params of the same name and add
	// to them; either way every name must be a param the Pipeline declares.
	Params map[string]string
	// WorkDir is the scratch root: workspaces are directories under
	// WorkDir/workspaces/<pipeline workspace>, or WorkDir/claims/<claim>
	// for a run's persistentVolumeClaim binding (spec.WorkspaceDir); task
	// results and scripts live beside them. A workspace directory that
	// already holds files starts with them, like a PersistentVolumeClaim; a
	// fresh WorkDir gives empty workspaces, like emptyDir. A run's ConfigMap
	// and Secret workspaces are written there before the first step, their
	// files without write permission. Empty: a new temporary directory, left
	// in place and named in the progress output.
	WorkDir string
	// LinkDir receives one signed link per step and signer,
	// "<step>.<keyid[:8]>.link" (0644, written atomically); the steps of a
	// retried task's failed attempts keep theirs as
	// seal.AttemptLinkName(step, keyID, attempt). Required when Signers is
	// set.
	LinkDir string
	// Signers returns the keys that sign a step's link (one link each): the
	// functionaries the layout assigns to the step. Called for every step
	// before anything runs; an error or an empty list stops the run then.
	// Nil: no links are written, only the record is returned.
	Signers func(step string) ([]signing.Signer, error)
	// SkipSigner is the orchestrator's key: it signs a skip record (see
	// attest.BySkip) for each step of a task Tekton skips because its when
	// expressions are false, a parent was skipped or results it needs are
	// missing, so the layout's verifier can excuse its missing links. Nil:
	// no skip records are written (a skipped task then does not verify).
	SkipSigner signing.Signer
	// Exclude holds artifact exclude patterns (in-toto-run semantics, see
	// artifact.Options.Exclude) matched against "<workspace>/<path>".
	Exclude []string
	// Out receives progress: each step as it starts and ends, with duration
	// and exit code, and the steps' stdout/stderr prefixed with the step name.
	// Nil discards everything.
	Out io.Writer
	// Quiet keeps step stdout/stderr out of Out (progress lines stay).
	Quiet bool
	// RunID identifies the run in every link; empty: a random ID.
	RunID string
	// Env is the host environment passed to every step, before the step's
	// own env; nil: DefaultEnv().
	Env []string
	// commandsOnly: prepare plans the tasks for Commands and stops there.
	commandsOnly bool
	// DefaultWorkingDir is where a step starts when it declares no
	// workingDir, and what a relative workingDir is relative to; empty: the
	// current directory. The CLI passes the pipeline file's directory.
	DefaultWorkingDir string
}

// DefaultEnv returns the host variables steps see by default: those a build
// needs to find its tools and caches, nothing else.
func DefaultEnv() []string {
	keep := map[string]bool{}
	for _, k := range []string{
		"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM",
		"GOPATH", "GOCACHE", "GOMODCACHE", "GOFLAGS", "GOPROXY", "GOSUMDB", "GONOSUMDB",
		"GOPRIVATE", "GONOPROXY", "GOTOOLCHAIN", "GOROOT", "GOENV",
		"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
		"http_proxy", "https_proxy", "no_proxy",
	} {
		keep[k] = true
	}
	var out []string
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok && keep[k] {
			out = append(out, kv)
		}
	}
	return out
}

// Run executes spec on this host and returns what it did.
//
// Tasks run one at a time in spec.Order(); a task whose when expressions are
// false is skipped, as are tasks needing its results (Tekton's rules). For
// every step the task's workspaces are hashed before (materials) and after
// (products), the step runs as a host process, and its link is signed by
// each of opts.Signers(step) and written to opts.LinkDir.
//
// A task with retries that fails runs again from its first step, up to
// its retries (see attempts); the record holds its last attempt.
//
// Then the finally tasks run, in declaration order, whether the tasks
// succeeded, failed or were skipped (see runFinally): a failed task stops
// the tasks after it (skipped, "PipelineRun was stopping"), not the finally
// tasks; a finally task that fails fails the run, after the others ran.
//
// On a failing step Run returns the record so far (including the failed
// step, whose link is written, and the finally tasks) together with a
// *StepError. Invalid input is reported with ErrInvalid before anything of
// the affected task runs; it stops the run without finally tasks.
func Run(ctx context.Context, spec *tekton.Spec, opts Options) (*run.Record, error) {
	ctx = spec.Context(ctx) // the run file's Tekton feature flags
	r, err := prepare(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// prepare validates everything that can be checked before the first step
// runs: params, workspaces, substitutions not depending on task results,
// unsupported features, signers, and the directories to write to.
func prepare(ctx context.Context, spec *tekton.Spec, opts Options) (*runner, error) {
	p := spec.Pipeline
	r := &runner{spec: spec, opts: opts, out: newProgress(opts.Out), status: map[string]taskStatus{}}
	if opts.Signers != nil && opts.LinkDir == "" {
		return nil, invalid("pipeline %s: signers given but no link directory", p.Name)
	}
	r.runID = opts.RunID
	if r.runID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		r.runID = hex.EncodeToString(b[:])
	}
	var err error
	if r.defaultWD, err = absOrCwd(opts.DefaultWorkingDir); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(r.defaultWD); err != nil || !fi.IsDir() {
		return nil, invalid("pipeline %s: default working directory %s is not a directory", p.Name, r.defaultWD)
	}
	r.env = opts.Env
	if r.env == nil {
		r.env = DefaultEnv()
	}

	if err := r.preparePipelineRun(); err != nil {
		return nil, err
	}
	order, err := spec.Order()
	if err != nil {
		return nil, invalid("%v", err)
	}
	r.order = order
	r.final = spec.Finally()
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}
	if r.opts.commandsOnly {
		return r, nil
	}
	if err := r.prepareDirs(); err != nil {
		return nil, err
	}
	return r, nil
}

// Commands returns, for every step of spec ("<pipelineTask>.<step>"), the
// command its link will record when spec runs with opts: Tekton's
// substitution of what is known before the run (the run's and opts'
// params, defaults, context — the run ID included — workspace, result and
// step paths as a Pod sees them), applied with the same code the run uses.
// What only the run knows (other tasks' results, $(tasks.status), step
// results) is left as the planning leaves it, so those steps' links will
// differ. Nothing is written or executed; opts' signers and directories
// are ignored. The layout generator takes these as expected commands, so a
// clean run gives in-toto-golang no command warnings.
func Commands(ctx context.Context, spec *tekton.Spec, opts Options) (map[string][]string, error) {
	opts.Signers, opts.SkipSigner, opts.LinkDir, opts.Out = nil, nil, "", nil
	opts.commandsOnly = true
	r, err := prepare(spec.Context(ctx), spec, opts)
	if err != nil {
		return nil, err
	}
	return r.commands, nil
}

func absOrCwd(dir string) (string, error) {
	if dir == "" {
		return os.Getwd()
	}
	return filepath.Abs(dir)
}

// preparePipelineRun builds the PipelineRun Tekton's reconciler would see,
// validates its params with Tekton's validators and applies pipeline-level
// substitution (params, context, workspaces) with Tekton's functions.
func (r *runner) preparePipelineRun() error {
	p := r.spec.Pipeline
	// What Tekton's checks of the run are about: the Pipeline, or the run
	// file's run and where it is.
	what := "pipeline " + p.Name
	if run := r.spec.Run; run != nil {
		what = fmt.Sprintf("%s: %s %q (pipeline %s)", r.spec.Path, run.Kind, run.Name, p.Name)
	}
	params, err := pipelineRunParams(p.Name, p.Spec.Params, r.opts.Params)
	if err != nil {
		return err
	}
	pr := &v1.PipelineRun{}
	pr.Name = p.Name + "-" + shortID(r.runID)
	pr.Namespace = metav1.NamespaceDefault
	pr.UID = typesUID(r.runID)
	if run := r.spec.Run; run != nil {
		// A PipelineRun file's name and namespace, as $(context.pipelineRun.*)
		// shows them on a cluster; a generateName gets the run ID's suffix.
		if run.Kind == "PipelineRun" {
			pr.Name = run.Name
			if run.Generated {
				pr.Name += "-" + shortID(r.runID)
			}
		}
		pr.Namespace = run.Namespace
		// A run file's params, overridden and extended by the caller's.
		pr.Spec.Params = mergeParams(run.Params, params)
		pr.Spec.Workspaces = append([]v1.WorkspaceBinding(nil), run.Workspaces...)
	} else {
		pr.Spec.Params = params
		for _, w := range p.Spec.Workspaces {
			pr.Spec.Workspaces = append(pr.Spec.Workspaces, emptyDirBinding(w.Name, ""))
		}
	}
	ps := p.Spec.DeepCopy()
	if err := prresources.ValidateRequiredParametersProvided(&ps.Params, &pr.Spec.Params); err != nil {
		return invalid("%s: %v", what, err)
	}
	if err := prresources.ValidateParamTypesMatching(ps, pr); err != nil {
		return invalid("%s: %v", what, err)
	}
	if err := prresources.ValidateObjectParamRequiredKeys(ps.Params, pr.Spec.Params); err != nil {
		return invalid("%s: %v", what, err)
	}
	if err := prresources.ValidateParamArrayIndex(ps, pr.Spec.Params); err != nil {
		return invalid("%s: %v", what, err)
	}
	if err := prresources.ValidateWorkspaceBindings(ps, pr); err != nil {
		return invalid("%s: %v", what, err)
	}
	effective, err := effectiveParams(ps, pr)
	if err != nil {
		return invalid("%s: %v", what, err)
	}
	ps, err = prresources.ApplyParameters(ps, pr)
	if err != nil {
		return invalid("%s: %v", what, err)
	}
	ps = prresources.ApplyContexts(ps, p.Name, pr)
	ps = prresources.ApplyWorkspaces(ps, pr)
	r.pr, r.ps, r.params = pr, ps, effective
	return nil
}

func shortID(id string) string {
	// "local-<hex>" run IDs: keep the random part, not the prefix.
	if i := strings.LastIndexByte(id, '-'); i >= 0 && len(id)-i > 8 {
		id = id[i+1:]
	}
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

package attest

import (
	"context"
	"fmt"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Keys of a link's environment that stepseal sets.
const (
	EnvRunID       = "stepseal.dev/run-id"
	EnvPipeline    = "stepseal.dev/pipeline"
	EnvImage       = "image"
	EnvImageDigest = "image-digest"
	EnvWorkingDir  = "working-dir"
	EnvVars        = "env"
	EnvStartedOn   = "started-on"
	EnvFinishedOn  = "finished-on"
	EnvScriptHash  = "script-sha256"
	EnvImageNote   = "image-note"
)

// Keys of a link's byproducts that stepseal sets.
const (
	// ByReturnValue is the command's exit status, as in-toto-run records it;
	// stepseal's verifier refuses a link whose command failed unless the
	// layout lets the step fail (see ReadmeOnErrorContinue).
	ByReturnValue = "return-value"
	// ByTimedOut is true when a timeout killed the step (set only then).
	ByTimedOut   = "stepseal.dev/timed-out"
	ByStdoutHash = "stdout-sha256"
	ByStderrHash = "stderr-sha256"
	// BySkip marks a skip record: the step did not run because the
	// orchestrator skipped its task; its value is the run.Skip (reason,
	// when expressions with resolved inputs, cascade parent). A skip
	// record has no command and no return-value, and its materials and
	// products are both the task's workspaces as they were when it was
	// skipped (it changed nothing), so the artifact rules of the steps
	// after it hold as they would after a run.
	BySkip = "stepseal.dev/skip"
)

// Link builds the in-toto link of one step. runID and pipeline bind the link
// to one run so it cannot be replayed into another.
func Link(rec *run.Record, step run.Step) in_toto.Link {
	if step.Skip != nil {
		return skipLink(rec, step)
	}
	env := map[string]interface{}{
		EnvRunID:      rec.RunID,
		EnvPipeline:   rec.Pipeline,
		EnvImage:      step.Image,
		EnvStartedOn:  step.StartedAt.UTC().Format(time.RFC3339Nano),
		EnvFinishedOn: step.FinishedAt.UTC().Format(time.RFC3339Nano),
	}
	switch {
	case step.ImageDigest != "":
		env[EnvImageDigest] = step.ImageDigest
	case rec.Source == run.SourceLocal:
		env[EnvImageNote] = "image recorded, not pulled: the step ran as a host process"
	}
	if step.WorkingDir != "" {
		env[EnvWorkingDir] = step.WorkingDir
	}
	if step.ScriptDigest != "" {
		env[EnvScriptHash] = step.ScriptDigest
	}
	if len(step.Env) > 0 {
		vars := make(map[string]interface{}, len(step.Env))
		for k, v := range step.Env {
			vars[k] = v
		}
		env[EnvVars] = vars
	}
	by := map[string]interface{}{ByReturnValue: step.ExitCode}
	if step.TimedOut {
		by[ByTimedOut] = true
	}
	if d, ok := step.Stdout["sha256"]; ok {
		by[ByStdoutHash] = d
	}
	if d, ok := step.Stderr["sha256"]; ok {
		by[ByStderrHash] = d
	}
	return in_toto.Link{
		Type:        "link",
		Name:        step.Name,
		Materials:   toHashObjs(step.Materials),
		Products:    toHashObjs(step.Products),
		ByProducts:  by,
		Command:     nonNil(step.ExecutedCommand()),
		Environment: env,
	}
}

// SignLink wraps a link in a Metablock signed by s. The result is what
// in-toto-golang's `in-toto run` writes and `in-toto verify` reads.
func SignLink(ctx context.Context, l in_toto.Link, s signing.Signer) (*in_toto.Metablock, error) {
	mb := &in_toto.Metablock{Signed: l}
	if err := signing.SignMetablock(ctx, mb, s); err != nil {
		return nil, fmt.Errorf("signing link of step %s: %w", l.Name, err)
	}
	return mb, nil
}

func toHashObjs(a run.Artifacts) map[string]in_toto.HashObj {
	out := make(map[string]in_toto.HashObj, len(a))
	for name, ds := range a {
		h := make(in_toto.HashObj, len(ds))
		for alg, d := range ds {
			h[alg] = d
		}
		out[name] = h
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// skipLink is the skip record of one step of a skipped task.
func skipLink(rec *run.Record, step run.Step) in_toto.Link {
	return in_toto.Link{
		Type:       "link",
		Name:       step.Name,
		Materials:  toHashObjs(step.Materials),
		Products:   toHashObjs(step.Products),
		ByProducts: map[string]interface{}{BySkip: SkipValue(step.Skip)},
		Command:    []string{},
		Environment: map[string]interface{}{
			EnvRunID:     rec.RunID,
			EnvPipeline:  rec.Pipeline,
			EnvStartedOn: step.StartedAt.UTC().Format(time.RFC3339Nano),
		},
	}
}

// SkipValue is s as the JSON value a skip record's byproducts carry
// (strings, lists and booleans only: canonical JSON has no floats).
func SkipValue(s *run.Skip) map[string]interface{} {
	out := map[string]interface{}{"reason": s.Reason}
	if s.Parent != "" {
		out["parent"] = s.Parent
	}
	if len(s.When) > 0 {
		list := make([]interface{}, len(s.When))
		for i, w := range s.When {
			m := map[string]interface{}{}
			if w.CEL != "" {
				m["cel"] = w.CEL
				if w.CELResult != nil {
					m["celResult"] = *w.CELResult
				}
			} else {
				m["input"] = w.Input
				m["operator"] = w.Operator
				m["values"] = anyList(w.Values)
				m["resolvedInput"] = w.ResolvedInput
				m["resolvedValues"] = anyList(w.ResolvedValues)
			}
			list[i] = m
		}
		out["when"] = list
	}
	return out
}

func anyList(ss []string) []interface{} {
	out := make([]interface{}, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

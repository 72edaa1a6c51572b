package localrun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/signing"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/record"
	"github.com/stepseal/stepseal/pkg/run"
)

// writeLinks signs the step's link with each of its signers into LinkDir.
func (r *runner) writeLinks(ctx context.Context, step *run.Step) error {
	_, err := record.WriteLinks(ctx, r.opts.LinkDir, attest.Link(r.rec, *step), r.signers[step.Name])
	return err
}

// skipRecord records why task pt was skipped (run.Task.Skip) and, with a
// SkipSigner, signs
// a skip record for each of its steps: its materials and products are the
// task's workspaces as they are now (the task changed nothing), so the
// rules of the steps after it hold as after a run. A nil skip (a reason no
// record excuses) records nothing more.
func (r *runner) skipRecord(ctx context.Context, pt *v1.PipelineTask, skip *run.Skip) error {
	if skip == nil {
		return nil
	}
	r.rec.Tasks[len(r.rec.Tasks)-1].Skip = skip
	if r.opts.SkipSigner == nil || r.opts.LinkDir == "" {
		return nil
	}
	ts := r.taskSpec(pt)
	if ts == nil {
		return nil
	}
	seen := map[string]bool{}
	arts := run.Artifacts{}
	for _, b := range pt.Workspaces {
		pw := b.Workspace
		if pw == "" {
			pw = b.Name
		}
		root, ok := r.wsDirs[pw]
		if !ok {
			continue
		}
		dir, prefix := root, pw
		if sub := b.SubPath; sub != "" && filepath.IsLocal(sub) && !tektonVar.MatchString(sub) {
			dir, prefix = filepath.Join(root, sub), pw+"/"+filepath.ToSlash(filepath.Clean(sub))
		}
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if _, err := os.Stat(dir); err != nil {
			continue // nothing there yet: an empty workspace
		}
		a, err := artifact.Hash(ctx, dir, prefix, artifact.Options{Exclude: r.opts.Exclude})
		if err != nil {
			return fmt.Errorf("pipeline task %s: skip record: %w", pt.Name, err)
		}
		for k, v := range a {
			arts[k] = v
		}
	}
	now := time.Now()
	for i, st := range ts.Steps {
		step := run.Step{Name: run.StepName(pt.Name, stepName(st, i)), Materials: arts, Products: arts, StartedAt: now, FinishedAt: now, Skip: skip}
		if _, err := record.WriteLinks(ctx, r.opts.LinkDir, attest.Link(r.rec, step), []signing.Signer{r.opts.SkipSigner}); err != nil {
			return fmt.Errorf("pipeline task %s: skip record: %w", pt.Name, err)
		}
	}
	return nil
}

// writtenWhen returns pipeline task name's when expressions as the
// Pipeline writes them, before any substitution.
func (r *runner) writtenWhen(name string) v1.WhenExpressions {
	for _, pt := range append(append([]v1.PipelineTask(nil), r.spec.Pipeline.Spec.Tasks...), r.spec.Pipeline.Spec.Finally...) {
		if pt.Name == name {
			return pt.When
		}
	}
	return nil
}

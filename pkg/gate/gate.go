package gate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/verify"
)

// Input is one gate's verification: the layout and its owners as the
// trust source gave them, where the run's links are (Fresh: a new source
// per look, since sources cache what they read), and the options of
// verify.Layout, whose Steps is the gate's scope (empty: every step).
type Input struct {
	Layout  []byte
	Owners  []signing.Verifier
	Fresh   func() verify.LinkSource
	Options verify.Options
	// Wait bounds the wait for the links of every step in scope (zero:
	// one look).
	Wait WaitOptions
}

// Verify carries out a gate, in order:
//
//  1. Expand the scope (Options.Steps) against the layout's step names
//     (verify.ScopeSteps; a name the layout does not have is ErrScope).
//  2. Wait (bounded) until each step in scope has as many link files as
//     its threshold in the source.
//  3. Verify the links the last look saw against the layout with
//     verify.Layout, the scope kept: steps still missing after the wait
//     fail as verify.MissingStepError, naming the step.
//
// It returns the verdict (nil when none could be given, with the error
// saying why: "could not check") and the steps the wait ended without.
func Verify(ctx context.Context, in Input) (*verify.Verdict, []string, error) {
	all, need, err := verify.LayoutSteps(in.Layout) // 1
	if err != nil {
		v, err := verify.Layout(ctx, in.Layout, in.Owners, in.Fresh(), in.Options) // its verdict says why
		return v, nil, err
	}
	scope := all
	if len(in.Options.Steps) > 0 {
		if scope, err = verify.ScopeSteps(all, in.Options.Steps); err != nil {
			return nil, nil, err
		}
	}
	start := time.Now()
	want := make([]Need, len(scope))
	for i, s := range scope {
		want[i] = Need{Step: s, Links: need[s]}
	}
	src, missing, err := Wait(ctx, in.Fresh, want, in.Wait) // 2
	if err != nil {
		return nil, nil, err
	}
	v, err := verify.Layout(ctx, in.Layout, in.Owners, src, in.Options) // 3
	if v != nil && len(missing) > 0 && in.Wait.Timeout > 0 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("waited %s for the links of %d step(s); still missing: %s",
			time.Since(start).Round(time.Second), len(missing), strings.Join(missing, ", ")))
	}
	return v, missing, err
}

// LayoutDir reads the layout and its owners' keys from a directory, as a
// ConfigMap or Secret mounted into a Task holds them: root.layout and every
// *.pub beside it (sorted), each an owner key. Without TUF the cluster's
// objects are then the trust root: whoever may edit them chooses the
// layout and its owners.
func LayoutDir(dir string) (layout string, keys []string, err error) {
	layout = filepath.Join(dir, "root.layout")
	if _, err := os.Stat(layout); err != nil {
		return "", nil, fmt.Errorf("layout directory %s: %w", dir, err)
	}
	keys, err = filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return "", nil, err
	}
	if len(keys) == 0 {
		return "", nil, fmt.Errorf("layout directory %s: no owner key (*.pub)", dir)
	}
	return layout, keys, nil
}

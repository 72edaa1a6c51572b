package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/verify"
)

// ErrLinksUnavailable: the link source (a served log) could not be read
// until the wait ended: no verdict ("could not check", not a refusal).
var ErrLinksUnavailable = reject.Sentinel(reject.ErrUnavailable, "the run's links could not be read")

// WaitOptions bound a wait.
type WaitOptions struct {
	// Timeout is how long to wait for links; zero looks once.
	Timeout time.Duration
	// First and Max are the backoff's first and largest pause between
	// looks (defaults 500 ms and 5 s); each pause doubles the last.
	First, Max time.Duration
	// Progress, if set, is told after each look which steps still lack a
	// link.
	Progress func(missing []string)
}

// Need is a step a gate waits for and how many link files it needs (its
// threshold: links by distinct keys).
type Need struct {
	Step  string
	Links int
}

// Wait looks at the run's links, through a fresh source from fresh each
// time (sources cache what they read), until every step of steps has as
// many link files as it needs (at least one) or the timeout ends. It returns the source of its
// last look (verify that one: it is what was seen) and the steps still
// missing, in the order of steps. It never decides: links that are there
// are not yet verified, and missing steps are the verification's
// MissingStepError. Only when the last look failed is the error
// ErrLinksUnavailable (the source could not be read); a ctx that ends
// returns its error.
func Wait(ctx context.Context, fresh func() verify.LinkSource, steps []Need, o WaitOptions) (verify.LinkSource, []string, error) {
	if o.First <= 0 {
		o.First = 500 * time.Millisecond
	}
	if o.Max < o.First {
		o.Max = max(5*time.Second, o.First)
	}
	deadline := time.Now().Add(o.Timeout)
	pause := o.First
	for {
		src := fresh()
		missing, err := look(ctx, src, steps)
		if err == nil && o.Progress != nil {
			o.Progress(missing)
		}
		if err == nil && len(missing) == 0 || errors.Is(err, verify.ErrVerification) {
			// All there, or the source refuses the run's links (two
			// different links under one name): verification says which.
			return src, nil, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		left := time.Until(deadline)
		if left <= 0 {
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %w", ErrLinksUnavailable, err)
			}
			return src, missing, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(min(pause, left)):
		}
		pause = min(2*pause, o.Max)
	}
}

// look returns the steps of steps with fewer link files in src than they
// need.
func look(ctx context.Context, src verify.LinkSource, steps []Need) ([]string, error) {
	names, err := src.LinkNames(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	have := map[string]int{}
	for _, n := range names {
		if s := verify.StepOfLink(n); s != "" {
			have[s]++
		}
	}
	var missing []string
	for _, s := range steps {
		if have[s.Step] < max(s.Links, 1) && !slices.Contains(missing, s.Step) {
			missing = append(missing, s.Step)
		}
	}
	return missing, nil
}

package verify

import (
	"testing"

	"github.com/stepseal/stepseal/pkg/seal"
)

// A retried task's failed attempts keep their links under
// seal.AttemptLinkName beside the run's: the verifier leaves them aside,
// as in-toto-golang's link glob does, so a failed attempt (a non-zero exit,
// even a link by a key the layout does not know) neither fails nor passes
// the run. A plain ".link" name that is no step's still fails it.
func TestAttemptLinksLeftAside(t *testing.T) {
	c := newChain(t)
	failed := c.steps["build.compile"]
	failed.ExitCode = 1
	_, data := c.signStep(failed, "dave", c.runID)
	c.extra = Memory{seal.AttemptLinkName("build.compile", keyID(t, "dave"), 1): data}
	layout, links := c.build()
	if _, err := ours(t, layout, links, Options{}); err != nil {
		t.Fatalf("an attempt link failed the run: %v", err)
	}
	if err := inToto(t, layout, links); err != nil {
		t.Fatalf("in-toto-golang: %v", err)
	}
	links["build.compile.attempt.link"] = data
	if _, err := ours(t, layout, links, Options{}); err == nil {
		t.Fatal("a link file naming no step passed")
	}
}

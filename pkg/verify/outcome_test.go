package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Attack/defect: a link recording a failed command (return-value 1) passed
// without a word. It fails verification naming the step, link, key and
// return value, unless the layout lets the step fail; a timed-out step fails
// even then. in-toto-golang accepts all of these (it ignores byproducts):
// the deliberate strictness documented in doc.go.
func TestFailedStepFailsVerification(t *testing.T) {
	carol := keyID(t, "carol")
	file := "fetch.copy." + carol[:8] + ".link"
	cases := []struct {
		name    string
		exit    int
		timeout bool
		mayFail bool
		tamper  func(signed map[string]any)
		want    error
		words   []string
	}{
		{name: "exit 1", exit: 1, want: ErrStepFailed, words: []string{`step "fetch.copy"`, file, carol[:8], "return-value 1", "onError: continue"}},
		{name: "exit 1, may fail", exit: 1, mayFail: true},
		{name: "exit 137, timed out", exit: 137, timeout: true, want: ErrStepFailed, words: []string{`step "fetch.copy"`, "timed out"}},
		{name: "timed out, may fail", exit: 137, timeout: true, mayFail: true, want: ErrStepFailed, words: []string{"timed out", "even though the layout lets it fail"}},
		{name: "no return-value", tamper: func(s map[string]any) { delete(s["byproducts"].(map[string]any), attest.ByReturnValue) },
			want: ErrNoReturnValue, words: []string{`step "fetch.copy"`, "no return-value"}},
		{name: "string return-value", tamper: func(s map[string]any) { s["byproducts"].(map[string]any)[attest.ByReturnValue] = "0" },
			want: ErrNoReturnValue, words: []string{`"0" is not an integer`}},
		{name: "no command, no return-value (in-toto-record)", tamper: func(s map[string]any) {
			s["command"] = []any{}
			s["byproducts"] = map[string]any{}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain(t)
			s := c.steps["fetch.copy"]
			s.ExitCode, s.TimedOut = tc.exit, tc.timeout
			c.steps["fetch.copy"] = s
			if tc.mayFail {
				c.layout.Readme = "Built by stepseal.\n" + attest.OnErrorContinueLines([]string{"fetch.copy"})
			}
			if tc.tamper != nil {
				c.tamperLink = func(step, _ string, signed map[string]any) {
					if step == "fetch.copy" {
						tc.tamper(signed)
					}
				}
			}
			layout, links := c.build()
			if tc.tamper != nil {
				// Re-sign the edited link: the outcome check, not the
				// signature, must reject it.
				links[file] = resign(t, links[file], "carol")
			}
			v, err := ours(t, layout, links, Options{})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if tc.mayFail && !strings.Contains(strings.Join(v.Warnings, "\n"), "return-value 1") {
					t.Fatalf("a step that may fail and failed is not mentioned: %v", v.Warnings)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrVerification) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, w := range tc.words {
				if !strings.Contains(failureText(v), w) {
					t.Errorf("failure %q does not say %q", failureText(v), w)
				}
			}
			if err := inToto(t, layout, links); err != nil {
				t.Fatalf("in-toto-golang rejects it too (%v): then this is not a deliberate difference", err)
			}
		})
	}
}

// A layout readme directive naming a step the layout does not have, or an
// unknown directive, makes the layout malformed rather than being ignored.
func TestReadmeDirectivesAreChecked(t *testing.T) {
	for readme, want := range map[string]string{
		attest.OnErrorContinueLines([]string{"no.such"}):                                                          "names a step the layout does not have",
		"stepseal.dev/allow-failure: fetch.copy\n":                                                                "not a directive stepseal knows",
		attest.OnErrorContinueLines([]string{"fetch.copy"}) + attest.OnErrorContinueLines([]string{"fetch.copy"}): "named twice",
	} {
		c := newChain(t)
		c.layout.Readme = readme
		layout, links := c.build()
		v, err := ours(t, layout, links, Options{})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(failureText(v), want) {
			t.Errorf("readme %q: %v, want ErrMalformed saying %q", readme, err, want)
		}
	}
}

// resign replaces a link's signatures by a fresh one of signer over its
// (edited) signed part.
func resign(t *testing.T, data []byte, signer string) []byte {
	t.Helper()
	var mb in_toto.Metablock
	if err := json.Unmarshal(data, &mb); err != nil {
		t.Fatal(err)
	}
	mb.Signatures = nil
	if err := signing.SignMetablock(context.Background(), &mb, key(t, signer)); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(mb, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The verdict records the run its links were checked to come from, given
// or agreed on, and it is in the JSON a script reads (verification.json).
func TestVerdictNamesRun(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	for _, opts := range []Options{{}, {RunID: "run-1"}} {
		v, err := ours(t, layout, links, opts)
		if err != nil || v.RunID != "run-1" {
			t.Fatalf("opts %+v: run %q, %v", opts, v.RunID, err)
		}
		b, err := json.Marshal(v)
		if err != nil || !strings.Contains(string(b), `"runId":"run-1"`) {
			t.Fatalf("JSON %s, %v", b, err)
		}
	}
	v, _ := ours(t, layout, links, Options{RunID: "run-2"})
	if v.Passed || v.RunID != "run-2" {
		t.Fatalf("links of run-1 checked against run-2: passed %v, run %q", v.Passed, v.RunID)
	}
}

// Verifying without naming an artifact must be asked for: a verdict that
// binds nothing says only that some supply chain happened.
func TestArtifactRequiredUnlessUnsafe(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	owners := []signing.Verifier{verifier(t, "owner")}
	if v, err := Layout(t.Context(), layout, owners, links, Options{}); v != nil || !errors.Is(err, ErrNoArtifact) {
		t.Fatalf("no artifact, no opt-out: verdict %v, %v; want ErrNoArtifact", v, err)
	}
	v, err := Layout(t.Context(), layout, owners, links, Options{WithoutArtifactUnsafe: true})
	if err != nil || !strings.Contains(strings.Join(v.Warnings, "\n"), "no artifact bound") {
		t.Fatalf("opted out: %v, warnings %q", err, v.Warnings)
	}
	v, err = Layout(t.Context(), layout, owners, links, Options{Artifacts: map[string]run.DigestSet{output: digest("tarball")}})
	if err != nil || strings.Contains(strings.Join(v.Warnings, "\n"), "no artifact bound") {
		t.Fatalf("with the artifact: %v, warnings %q", err, v.Warnings)
	}
}

// Every category matches its reason in the shared vocabulary and
// reject.ErrRefused, never reject.ErrUnableToCheck.
func TestCategoriesMatchSharedReasons(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason *reject.Reason
	}{
		{&SignatureError{Step: "s"}, reject.ErrSignature},
		{&UnauthorizedError{Step: "s"}, reject.ErrUnauthorized},
		{&ThresholdError{Step: "s"}, reject.ErrThreshold},
		{&ExpiredError{}, reject.ErrExpired},
		{&MissingStepError{Step: "s"}, reject.ErrMissing},
		{&StepFailedError{Step: "s"}, reject.ErrStepFailed},
		{&ArtifactRuleError{Step: "s"}, reject.ErrArtifactRule},
		{&MalformedError{}, reject.ErrMalformed},
		{&RunMismatchError{}, reject.ErrMismatch},
	} {
		err := fmt.Errorf("wrapped: %w", c.err)
		if !errors.Is(err, c.reason) || !errors.Is(err, reject.ErrRefused) || errors.Is(err, reject.ErrUnableToCheck) || reject.Of(err) != c.reason {
			t.Errorf("%T: reason %v, want %v (refused)", c.err, reject.Of(err), c.reason)
		}
	}
	for _, c := range []string{"verification", "layout-signature", "expired", "signature", "unauthorized", "threshold", "missing-step",
		"unknown-step", "disagreement", "run-mismatch", "step-failed", "no-return-value", "artifact-rule", "output-artifact", "malformed", "unsupported"} {
		if reasons[c] == nil && c != "verification" {
			t.Errorf("category %q has no shared reason", c)
		}
	}
}

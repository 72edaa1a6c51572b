package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/stepseal/stepseal/pkg/verify"
)

// Outcome is a gate's VERDICT result.
type Outcome string

const (
	// Passed: verified, every step in scope passed.
	Passed Outcome = "PASSED"
	// Failed: verified and refused (the verdict names every failure).
	Failed Outcome = "FAILED"
	// Error: no verdict: something could not be checked (the log or the
	// trust repository could not be read, a configuration mistake).
	Error Outcome = "ERROR"
)

// MaxSummary is the bound on the summary result: under 1 KiB, so that a
// Task's results stay far below Tekton's 4 KiB termination message.
const MaxSummary = 1023

// Summary is the one-line JSON summary result, in the shape of Conforma's
// TEST_OUTPUT: counts and the first failure, for dashboards and later
// tasks; the full report is the step's log.
type Summary struct {
	Result   Outcome  `json:"result"`
	RunID    string   `json:"runId,omitempty"`
	Steps    int      `json:"steps"`
	Passed   int      `json:"passed"`
	Failures int      `json:"failures"`
	Missing  []string `json:"missing,omitempty"`
	Note     string   `json:"note,omitempty"`
}

// Summarize turns a verification's outcome into the summary: v and err as
// verify.Layout returned them (v nil: no verdict, Error), missing the steps
// a wait ended without.
func Summarize(runID string, v *verify.Verdict, err error, missing []string) Summary {
	s := Summary{Result: Error, RunID: runID, Missing: missing}
	if v == nil {
		if err != nil {
			s.Note = err.Error()
		}
		return s
	}
	s.Result, s.Steps, s.Failures = Failed, len(v.Steps), len(v.Failures)
	if v.Passed && err == nil {
		s.Result = Passed
	}
	if v.RunID != "" {
		s.RunID = v.RunID
	}
	for _, st := range v.Steps {
		if st.Passed {
			s.Passed++
		}
	}
	switch {
	case len(v.Failures) > 0:
		s.Note = v.Failures[0].Error()
		if len(v.Failures) > 1 {
			s.Note = fmt.Sprintf("%s (and %d more failure(s): see the step's log)", s.Note, len(v.Failures)-1)
		}
	case err != nil:
		s.Note = err.Error()
	}
	return s
}

// Line encodes the summary on one line, under MaxSummary bytes: the note,
// then the list of missing steps, are shortened (at a UTF-8 boundary,
// marked "…") until it fits.
func (s Summary) Line() string {
	s.Note = strings.ToValidUTF8(s.Note, "\uFFFD")
	for {
		b, err := json.Marshal(s)
		if err != nil { // cannot happen: strings and ints only
			return `{"result":"ERROR"}`
		}
		if len(b) <= MaxSummary {
			return string(b)
		}
		over := len(b) - MaxSummary
		switch {
		case s.Note != "":
			s.Note = cut(s.Note, len(s.Note)-over-len("…"))
		case len(s.Missing) > 0:
			named := s.Missing
			if named[len(named)-1] == "…" {
				named = named[:len(named)-1]
			}
			if len(named) == 0 {
				s.Missing = nil
			} else {
				s.Missing = append(named[:len(named)/2:len(named)/2], "…")
			}
		default:
			s.Missing, s.RunID = nil, cut(s.RunID, 64)
		}
	}
}

// cut shortens s to at most n bytes at a rune boundary and marks it "…";
// a non-positive n leaves "…" alone (or nothing for an empty s).
func cut(s string, n int) string {
	if n >= len(s) {
		return s
	}
	if n <= 0 {
		if s == "…" || s == "" {
			return ""
		}
		return "…"
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// WriteResults writes the VERDICT and summary result files (each skipped
// when its path is empty). A summary is always written with its verdict:
// Tekton fails a TaskRun whose declared results are missing.
func WriteResults(verdictPath, summaryPath string, s Summary) error {
	var errs []error
	if verdictPath != "" {
		if err := os.WriteFile(verdictPath, []byte(s.Result), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("writing the verdict result: %w", err))
		}
	}
	if summaryPath != "" {
		if err := os.WriteFile(summaryPath, []byte(s.Line()), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("writing the summary result: %w", err))
		}
	}
	return errors.Join(errs...)
}

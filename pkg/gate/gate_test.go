package gate

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/verify"
)

// growing is a link source the "controller" adds to while a gate waits.
type growing struct {
	mu    sync.Mutex
	links verify.Memory
	fail  int // looks that fail before any succeeds
	looks int
	// refuse, when set, is every look's error: a source that refuses
	// the run's links (verify.DuplicateLinkError).
	refuse error
}

func (g *growing) fresh() verify.LinkSource { return g }

func (g *growing) LinkNames(ctx context.Context) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.looks++
	if g.refuse != nil {
		return nil, g.refuse
	}
	if g.looks <= g.fail {
		return nil, errors.New("connection refused")
	}
	return g.links.LinkNames(ctx)
}

func (g *growing) ReadLink(ctx context.Context, n string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.links.ReadLink(ctx, n)
}

func (g *growing) add(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.links[name] = []byte("{}")
}

var fast = WaitOptions{First: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// A gate that starts before the controller signed waits for the links,
// and returns only when all are there; a failed attempt's link does not
// count for its step.
func TestWaitUntilSigned(t *testing.T) {
	g := &growing{links: verify.Memory{"build.compile.aaaaaaaa.link": nil, "test.unit.bbbbbbbb.attempt-1.link": nil}, fail: 2}
	go func() {
		time.Sleep(50 * time.Millisecond)
		g.add("test.unit.bbbbbbbb.link")
		time.Sleep(50 * time.Millisecond)
		g.add("test.unit.cccccccc.link") // its threshold is 2
	}()
	o := fast
	o.Timeout = 10 * time.Second
	src, missing, err := Wait(context.Background(), g.fresh, []Need{{"build.compile", 1}, {"test.unit", 2}}, o)
	if err != nil || len(missing) != 0 || src == nil {
		t.Fatalf("missing %v, err %v", missing, err)
	}
	if g.looks < 5 || len(g.links) != 4 {
		t.Fatalf("returned after %d looks, before the link was added", g.looks)
	}
}

// A wait that ends with a step missing returns it (for the verdict to
// refuse); a source that never answers is "could not check".
func TestWaitTimeout(t *testing.T) {
	g := &growing{links: verify.Memory{"build.compile.aaaaaaaa.link": nil, "test.unit.bbbbbbbb.attempt-1.link": nil}}
	o := fast
	o.Timeout = 60 * time.Millisecond
	src, missing, err := Wait(context.Background(), g.fresh, []Need{{"build.compile", 1}, {"test.unit", 1}}, o)
	if err != nil || src == nil || len(missing) != 1 || missing[0] != "test.unit" {
		t.Fatalf("missing %v, err %v", missing, err)
	}
	g = &growing{links: verify.Memory{}, fail: 1 << 30}
	_, _, err = Wait(context.Background(), g.fresh, []Need{{"build.compile", 1}}, o)
	if !errors.Is(err, ErrLinksUnavailable) || !errors.Is(err, reject.ErrUnableToCheck) || errors.Is(err, reject.ErrRefused) {
		t.Fatalf("unreachable source: %v", err)
	}
	// A source that refuses the run's links (two different links under one
	// name): no waiting, the verification refuses it.
	g = &growing{links: verify.Memory{}, refuse: &verify.DuplicateLinkError{Step: "build.compile", File: "build.compile.aaaaaaaa.link", RunID: "r"}}
	o.Timeout = 10 * time.Second
	if src, missing, err := Wait(context.Background(), g.fresh, []Need{{"build.compile", 1}}, o); err != nil || src == nil || len(missing) != 0 || g.looks != 1 {
		t.Fatalf("refusing source: %v %v after %d looks", missing, err, g.looks)
	}
	// No timeout: one look.
	g = &growing{links: verify.Memory{}}
	if _, missing, err := Wait(context.Background(), g.fresh, []Need{{"a.b", 1}}, WaitOptions{}); err != nil || len(missing) != 1 || g.looks != 1 {
		t.Fatalf("no wait: %v %v after %d looks", missing, err, g.looks)
	}
}

func TestSummaryFitsAResult(t *testing.T) {
	long := strings.Repeat("é<\"\n", 2000) + "\xff"
	for _, s := range []Summary{
		{Result: Failed, RunID: "r", Note: long},
		{Result: Failed, RunID: strings.Repeat("r", 5000), Missing: []string{strings.Repeat("x", 3000), "y"}, Note: long},
		{Result: Error, Missing: strings.Split(strings.Repeat("task.step,", 300), ",")},
		{Result: Passed, RunID: "r", Steps: 3, Passed: 3},
	} {
		line := s.Line()
		if len(line) > MaxSummary || !utf8.ValidString(line) || strings.Contains(line, "\n") {
			t.Fatalf("summary of %d bytes, valid %v", len(line), utf8.ValidString(line))
		}
		var back Summary
		if err := json.Unmarshal([]byte(line), &back); err != nil || back.Result != s.Result {
			t.Fatalf("summary does not decode: %v %s", err, line)
		}
	}
}

func TestSummarizeAndWrite(t *testing.T) {
	dir := t.TempDir()
	vf, sf := filepath.Join(dir, "VERDICT"), filepath.Join(dir, "SUMMARY")
	v := &verify.Verdict{Passed: false, RunID: "uid-1", Steps: []verify.StepResult{{Name: "a.b", Passed: true}, {Name: "c.d"}},
		Failures: []error{&verify.MissingStepError{Step: "c.d"}, &verify.MissingStepError{Step: "e.f"}}}
	s := Summarize("uid-1", v, &verify.Error{Failures: v.Failures}, []string{"c.d"})
	if s.Result != Failed || s.Passed != 1 || s.Failures != 2 || !strings.Contains(s.Note, `step "c.d": no link found`) || !strings.Contains(s.Note, "1 more") {
		t.Fatalf("%+v", s)
	}
	if err := WriteResults(vf, sf, s); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(vf); string(b) != "FAILED" {
		t.Fatalf("verdict %q", b)
	}
	if s := Summarize("uid-1", nil, errors.New("log down"), nil); s.Result != Error || s.Note != "log down" {
		t.Fatalf("%+v", s)
	}
	if s := Summarize("", &verify.Verdict{Passed: true, RunID: "u", Steps: []verify.StepResult{{Passed: true}}}, nil, nil); s.Result != Passed || s.RunID != "u" {
		t.Fatalf("%+v", s)
	}
}

func FuzzSummaryLine(f *testing.F) {
	f.Add("note", "run", "a.b")
	f.Add(strings.Repeat("\u00e9", 600), strings.Repeat("r", 900), "\xff\xfe")
	f.Fuzz(func(t *testing.T, note, run, step string) {
		line := Summary{Result: Failed, RunID: run, Missing: []string{step, step}, Note: note}.Line()
		if len(line) > MaxSummary || !utf8.ValidString(line) {
			t.Fatalf("%d bytes, valid %v", len(line), utf8.ValidString(line))
		}
		var back Summary
		if err := json.Unmarshal([]byte(line), &back); err != nil {
			t.Fatal(err)
		}
	})
}

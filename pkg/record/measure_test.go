package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepseal/stepseal/pkg/reject"
)

func workspace(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"main.go": "package main", "out/app": "app", "build.log": "noise", "$(x)": "odd name"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sum(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// TestEmitStartStop: start records materials named as the layout names
// workspace files ("<workspace>/<path>"), honours excludes, prints one line
// whose sha256 is the result; stop adds the step's exit code.
func TestEmitStartStop(t *testing.T) {
	ws := workspace(t)
	res := filepath.Join(t.TempDir(), "result")
	var log bytes.Buffer
	m, err := Emit(context.Background(), MeasureOptions{Kind: KindMaterials, Step: "build", TaskRun: "tr", TaskRunUID: "uid-1",
		Paths: []string{"source=" + ws}, Exclude: []string{"*.log"}}, &log, res)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"source/main.go": sum("package main"), "source/out/app": sum("app"), "source/$(x)": sum("odd name")}
	if len(m.Artifacts) != len(want) {
		t.Errorf("artifacts %v, want %v", m.Artifacts, want)
	}
	for k, v := range want {
		if m.Artifacts[k]["sha256"] != v {
			t.Errorf("%s: %v, want %s", k, m.Artifacts[k], v)
		}
	}
	digest, _ := os.ReadFile(res)
	line := bytes.TrimSuffix(log.Bytes(), []byte("\n"))
	if bytes.Count(log.Bytes(), []byte("\n")) != 1 || sum(string(line)) != string(digest) {
		t.Fatalf("log %q, result %q: want one line whose sha256 is the result", log.String(), digest)
	}
	back, err := FindMeasurement(append([]byte("other line\n"), log.Bytes()...), string(digest))
	if err != nil || back.Step != "build" || back.TaskRunUID != "uid-1" || back.ExitCode != nil {
		t.Fatalf("FindMeasurement: %+v, %v", back, err)
	}

	ec := filepath.Join(t.TempDir(), "exitCode")
	if err := os.WriteFile(ec, []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	m, err = Emit(context.Background(), MeasureOptions{Kind: KindProducts, Step: "build", TaskRunUID: "uid-1",
		Paths: []string{filepath.Join(ws, "out")}, ExitCodeFile: ec}, &log, res)
	if err != nil {
		t.Fatal(err)
	}
	if m.ExitCode == nil || *m.ExitCode != 3 || m.Artifacts[filepath.ToSlash(filepath.Join(ws, "out", "app"))] == nil {
		t.Errorf("products %+v exit %v", m.Artifacts, m.ExitCode)
	}
}

// TestMeasureParamsAreData: values a Task passes as params arrive as
// arguments, never through a shell; the ones that are not a step name or
// a path are refused, naming the value, and nothing is written.
func TestMeasureParamsAreData(t *testing.T) {
	ws := workspace(t)
	for _, o := range []MeasureOptions{
		{Step: "$(x)", Paths: []string{"source=" + ws}},
		{Step: "; rm -rf /", Paths: []string{"source=" + ws}},
		{Step: "build\nother", Paths: []string{"source=" + ws}},
		{Step: "build", Paths: []string{"; rm -rf /"}},
		{Step: "build", Paths: []string{"source=relative/dir"}},
		{Step: "build", Paths: []string{"$(x)=" + ws}},
		{Step: "build", Paths: []string{"a\nb=" + ws}},
		{Step: "build", Paths: []string{"source=" + ws}, Exclude: []string{""}},
	} {
		o.Kind, o.TaskRunUID = KindMaterials, "uid"
		res := filepath.Join(t.TempDir(), "result")
		var log bytes.Buffer
		_, err := Emit(context.Background(), o, &log, res)
		if err == nil {
			t.Errorf("%+v: accepted", o)
			continue
		}
		if _, statErr := os.Stat(res); statErr == nil || log.Len() > 0 {
			t.Errorf("%+v refused (%v) but wrote a result or log", o, err)
		}
	}
	// Stop without its exit code file, or with garbage in it.
	bad := filepath.Join(t.TempDir(), "exitCode")
	_ = os.WriteFile(bad, []byte("zero"), 0o644)
	for _, f := range []string{"", bad, filepath.Join(t.TempDir(), "absent")} {
		_, err := Measure(context.Background(), MeasureOptions{Kind: KindProducts, Step: "build", TaskRunUID: "u", Paths: []string{"s=" + ws}, ExitCodeFile: f})
		if err == nil {
			t.Errorf("exit code file %q: accepted", f)
		}
	}
}

func TestParseMeasurementStrict(t *testing.T) {
	good := `{"_type":"https://stepseal.dev/measurement/v1","kind":"products","step":"build","taskRun":"tr","taskRunUID":"u","artifacts":{"s/a":{"sha256":"` + sum("a") + `"}},"exitCode":0,"time":"2026-01-01T00:00:00Z"}`
	if _, err := ParseMeasurement([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"unknown field":      strings.Replace(good, `"time"`, `"extra":1,"time"`, 1),
		"trailing data":      good + `{}`,
		"wrong type":         strings.Replace(good, "measurement/v1", "measurement/v2", 1),
		"wrong kind":         strings.Replace(good, `"products"`, `"both"`, 1),
		"products, no exit":  strings.Replace(good, `"exitCode":0,`, "", 1),
		"materials and exit": strings.Replace(good, `"products"`, `"materials"`, 1),
		"bad step":           strings.Replace(good, `"build"`, `"Build;x"`, 1),
		"no uid":             strings.Replace(good, `"u"`, `""`, 1),
		"short digest":       strings.Replace(good, sum("a"), "abc", 1),
		"other algorithm":    strings.Replace(good, `"sha256"`, `"md5"`, 1),
	} {
		if _, err := ParseMeasurement([]byte(doc)); !errors.Is(err, ErrBadMeasurement) || !errors.Is(err, reject.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrBadMeasurement", name, err)
		}
	}
	if _, err := FindMeasurement([]byte(good+"\n"), sum("other")); !errors.Is(err, reject.ErrMissing) {
		t.Errorf("no line with the digest: %v", err)
	}
}

// FuzzParseMeasurement: the controller parses a line of an untrusted Pod's
// log. Never panics; what it accepts re-encodes and parses to the same.
func FuzzParseMeasurement(f *testing.F) {
	f.Add([]byte(`{"_type":"https://stepseal.dev/measurement/v1","kind":"materials","step":"build","taskRun":"tr","taskRunUID":"u","artifacts":{"s/a":{"sha256":"` + sum("a") + `"}},"time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"_type":"https://stepseal.dev/measurement/v1","kind":"products","step":"b","taskRunUID":"u","exitCode":-1,"artifacts":null,"time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeasurement(b)
		if err != nil {
			return
		}
		line, digest, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := FindMeasurement(append(line, '\n'), digest)
		if err != nil || back.Step != m.Step || back.Kind != m.Kind || len(back.Artifacts) != len(m.Artifacts) {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}

// TestStopSettlesPastTheStepsExit: stop begins hashing only in a whole
// second later than the one in which a step exiting up to StepExitMargin
// after stop started is timed by Tekton's status, and its Time is that
// second: a step container still running when hashing began cannot have a
// finishedAt before Time.
func TestStopSettlesPastTheStepsExit(t *testing.T) {
	ws := workspace(t)
	ec := filepath.Join(t.TempDir(), "exitCode")
	if err := os.WriteFile(ec, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		called := time.Now()
		m, err := Measure(context.Background(), MeasureOptions{Kind: KindProducts, Step: "build", TaskRunUID: "u",
			Paths: []string{"source=" + ws}, ExitCodeFile: ec})
		if err != nil {
			t.Fatal(err)
		}
		lastExit := called.Add(StepExitMargin).Truncate(time.Second) // a step exiting that late has this finishedAt
		if !lastExit.Before(m.Time) || m.Time.Sub(lastExit) != time.Second {
			t.Fatalf("called at %s: Time %s, want the second after %s", called.Format(time.RFC3339Nano), m.Time, lastExit)
		}
		if m.Time.After(time.Now()) || m.Time.Nanosecond() != 0 {
			t.Fatalf("Time %s is not a whole second at or before now", m.Time)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Measure(ctx, MeasureOptions{Kind: KindProducts, Step: "build", TaskRunUID: "u",
		Paths: []string{"source=" + ws}, ExitCodeFile: ec}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled stop: %v", err)
	}
	called := time.Now()
	m, err := Measure(context.Background(), MeasureOptions{Kind: KindMaterials, Step: "build", TaskRunUID: "u", Paths: []string{"source=" + ws}})
	if err != nil || m.Time.Before(called.Truncate(time.Second)) || m.Time.After(time.Now()) {
		t.Fatalf("start: %v, Time %s, called at %s", err, m.Time, called.Format(time.RFC3339Nano))
	}
}

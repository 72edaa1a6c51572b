package localrun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

func newSigner(t *testing.T) signing.Signer {
	t.Helper()
	k, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func load(t *testing.T, pipeline, tasks string) *tekton.Spec {
	t.Helper()
	s, err := tekton.Load(context.Background(), pipeline, tasks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// syncBuffer collects progress output; steps write to it concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testRun holds one signer for every step and the options of a run.
type testRun struct {
	signer signing.Signer
	out    *syncBuffer
	opts   Options
}

func newTestRun(t *testing.T) *testRun {
	tr := &testRun{signer: newSigner(t), out: &syncBuffer{}}
	tr.opts = Options{
		WorkDir:           t.TempDir(),
		LinkDir:           t.TempDir(),
		Signers:           func(string) ([]signing.Signer, error) { return []signing.Signer{tr.signer}, nil },
		Out:               tr.out,
		DefaultWorkingDir: t.TempDir(),
		RunID:             "test-run-0001",
	}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("progress output:\n%s", tr.out.String())
		}
	})
	return tr
}

// checkLinks asserts that LinkDir holds exactly one link per recorded step
// and signer, that each signature verifies with in-toto-golang, and that the
// link says what the record says.
func checkLinks(t *testing.T, dir string, rec *run.Record, signerOf func(step string) signing.Signer) {
	t.Helper()
	var want []string
	for _, st := range rec.AllSteps() {
		s := signerOf(st.Name)
		id, _ := s.KeyID()
		name := seal.LinkName(st.Name, id)
		want = append(want, name)
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("link of %s: %v", st.Name, err)
			continue
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("link %s has mode %v, want 0644", name, fi.Mode().Perm())
		}
		md, err := in_toto.LoadMetadata(p)
		if err != nil {
			t.Fatalf("in-toto-golang cannot load %s: %v", name, err)
		}
		mb, ok := md.(*in_toto.Metablock)
		if !ok {
			t.Fatalf("link %s is a %T, want a Metablock", name, md)
		}
		key, err := signing.InTotoKey(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := mb.VerifySignature(key); err != nil {
			t.Errorf("link %s: signature does not verify: %v", name, err)
		}
		l, ok := mb.Signed.(in_toto.Link)
		if !ok {
			t.Fatalf("link %s holds %T", name, mb.Signed)
		}
		if l.Name != st.Name {
			t.Errorf("link %s names step %q", name, l.Name)
		}
		if diff := cmp.Diff(toHashObjs(st.Materials), l.Materials); diff != "" {
			t.Errorf("link %s materials differ from the record (-record +link):\n%s", name, diff)
		}
		if diff := cmp.Diff(toHashObjs(st.Products), l.Products); diff != "" {
			t.Errorf("link %s products differ from the record (-record +link):\n%s", name, diff)
		}
		if rv, _ := l.ByProducts["return-value"].(float64); int(rv) != st.ExitCode {
			t.Errorf("link %s return-value %v, record exit code %d", name, l.ByProducts["return-value"], st.ExitCode)
		}
		if l.Environment[attest.EnvRunID] != rec.RunID {
			t.Errorf("link %s run id %v, want %s", name, l.Environment[attest.EnvRunID], rec.RunID)
		}
		if _, ok := l.Environment[attest.EnvImageNote]; !ok {
			t.Errorf("link %s does not say its image was not pulled", name)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("link directory holds other files than one link per step (-want +got):\n%s", diff)
	}
}

func toHashObjs(a run.Artifacts) map[string]in_toto.HashObj {
	out := map[string]in_toto.HashObj{}
	for k, v := range a {
		out[k] = in_toto.HashObj(v)
	}
	return out
}

func under(a run.Artifacts, prefix string) run.Artifacts {
	out := run.Artifacts{}
	for k, v := range a {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func stepNames(rec *run.Record) []string {
	var out []string
	for _, s := range rec.AllSteps() {
		out = append(out, s.Name)
	}
	return out
}

func findStep(t *testing.T, rec *run.Record, name string) run.Step {
	t.Helper()
	for _, s := range rec.AllSteps() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s in record (have %v)", name, stepNames(rec))
	return run.Step{}
}

func findTask(t *testing.T, rec *run.Record, name string) run.Task {
	t.Helper()
	for _, tk := range rec.Tasks {
		if tk.PipelineTask == name {
			return tk
		}
	}
	t.Fatalf("no task %s in record", name)
	return run.Task{}
}

func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// TestGoBuildExample runs examples/go-build end to end with the host's go:
// four tasks, one functionary each, a materials/products chain through the
// source and dist workspaces, and a result passed from build to package.
func TestGoBuildExample(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet/test/build")
	}
	ex, err := filepath.Abs("../../examples/go-build")
	if err != nil {
		t.Fatal(err)
	}
	spec := load(t, filepath.Join(ex, "pipeline.yaml"), filepath.Join(ex, "tasks"))
	tr := newTestRun(t)
	signers := map[string]signing.Signer{}
	for _, task := range []string{"fetch", "test", "build", "package"} {
		signers[task] = newSigner(t)
	}
	signerOf := func(step string) signing.Signer {
		pt, _, _ := run.SplitStepName(step)
		return signers[pt]
	}
	tr.opts.Signers = func(step string) ([]signing.Signer, error) { return []signing.Signer{signerOf(step)}, nil }
	tr.opts.DefaultWorkingDir = ex
	rec, err := Run(context.Background(), spec, tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"fetch.copy", "test.vet", "test.unit", "build.compile", "package.tar"}, stepNames(rec)); diff != "" {
		t.Fatalf("steps (-want +got):\n%s", diff)
	}
	if rec.Pipeline != "go-build" || rec.RunID != "test-run-0001" || rec.Source != "stepseal/localrun" {
		t.Errorf("record header: %+v", rec)
	}
	if diff := cmp.Diff(map[string]string{"source-dir": "src", "version": "1.0.0"}, rec.Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}

	// The source workspace: empty before fetch, then each step's materials
	// are the previous step's products.
	fetch := findStep(t, rec, "fetch.copy")
	if len(under(fetch.Materials, "source/")) != 0 {
		t.Errorf("fetch.copy materials: %v", fetch.Materials.Names())
	}
	src, err := os.ReadFile(filepath.Join(ex, "src", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fetch.Products["source/main.go"]["sha256"]; got != sha(string(src)) {
		t.Errorf("fetch.copy product source/main.go = %s, want the digest of src/main.go", got)
	}
	chain := []string{"fetch.copy", "test.vet", "test.unit", "build.compile"}
	for i := 1; i < len(chain); i++ {
		prev, cur := findStep(t, rec, chain[i-1]), findStep(t, rec, chain[i])
		if diff := cmp.Diff(under(prev.Products, "source/"), under(cur.Materials, "source/")); diff != "" {
			t.Errorf("%s materials differ from %s products (-products +materials):\n%s", cur.Name, prev.Name, diff)
		}
		if diff := cmp.Diff(under(cur.Materials, "source/"), under(cur.Products, "source/")); diff != "" {
			t.Errorf("%s changed the read-only source (-before +after):\n%s", cur.Name, diff)
		}
	}
	build, pkg := findStep(t, rec, "build.compile"), findStep(t, rec, "package.tar")
	if _, ok := build.Products["dist/hello"]; !ok {
		t.Errorf("build.compile products lack dist/hello: %v", build.Products.Names())
	}
	if diff := cmp.Diff(under(build.Products, "dist/"), pkg.Materials); diff != "" {
		t.Errorf("package.tar materials differ from build.compile's dist products:\n%s", diff)
	}
	// Host paths are recorded as the Pod paths Tekton would give the step.
	if build.Env["CGO_ENABLED"] != "0" || build.WorkingDir != "/workspace/source" {
		t.Errorf("build.compile env %v, workingDir %s, want /workspace/source", build.Env, build.WorkingDir)
	}
	if !strings.Contains(build.Script, `-o "/workspace/output/hello"`) || !strings.Contains(build.Script, `> "/tekton/results/binary"`) || strings.Contains(build.Script, tr.opts.WorkDir) {
		t.Errorf("build.compile script records host paths, not Pod paths: %q", build.Script)
	}
	if build.ScriptDigest != sha(build.Script) || !strings.Contains(build.Script, "main.version=1.0.0") {
		t.Errorf("build.compile script not substituted or digest wrong: %q", build.Script)
	}

	// Results: build -> package param -> pipeline result.
	if got := findTask(t, rec, "build").Results["binary"]; got != "hello" {
		t.Errorf("build result binary = %q", got)
	}
	if got := findTask(t, rec, "package").Params["binary"]; got != "hello" {
		t.Errorf("package got param binary = %q, want $(tasks.build.results.binary) = hello", got)
	}
	archive, ok := pkg.Products["dist/app.tar.gz"]
	if !ok {
		t.Fatalf("package.tar products lack dist/app.tar.gz: %v", pkg.Products.Names())
	}
	if got := rec.Results["archive-sha256"]; got != archive["sha256"] {
		t.Errorf("pipeline result archive-sha256 = %q, want the product's digest %s", got, archive["sha256"])
	}
	if pkg.Results["sha256"] != archive["sha256"] {
		t.Errorf("package.tar step results %v", pkg.Results)
	}
	checkLinks(t, tr.opts.LinkDir, rec, signerOf)

	out := tr.out.String()
	for _, want := range []string{"images are recorded, not pulled", "==> build.compile", "<== build.compile exit 0", "test.unit | ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output lacks %q", want)
		}
	}
}

func TestWhenExpressions(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/when.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"check":          "",
		"guarded":        "When Expressions evaluated to false",
		"consumer":       "Results were missing",
		"after-consumer": "Parent Tasks were skipped",
		"after-guarded":  "",
		"by-param":       "",
	}
	for _, tk := range rec.Tasks {
		reason, ok := want[tk.PipelineTask]
		if !ok {
			t.Errorf("unexpected task %s", tk.PipelineTask)
			continue
		}
		delete(want, tk.PipelineTask)
		if tk.Skipped != (reason != "") || !strings.HasPrefix(tk.SkipReason, reason) {
			t.Errorf("task %s: skipped=%v reason %q, want reason %q", tk.PipelineTask, tk.Skipped, tk.SkipReason, reason)
		}
		if tk.Skipped && len(tk.Steps) > 0 {
			t.Errorf("skipped task %s has steps", tk.PipelineTask)
		}
	}
	if len(want) > 0 {
		t.Errorf("tasks missing from the record: %v", want)
	}
	if diff := cmp.Diff(map[string]string{"flag": "no"}, rec.Results); diff != "" {
		t.Errorf("pipeline results: results of skipped tasks are omitted (-want +got):\n%s", diff)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })

	// The param-guarded task is skipped when the param says so.
	tr = newTestRun(t)
	tr.opts.Params = map[string]string{"mode": "fast"}
	rec, err = Run(context.Background(), load(t, "testdata/when.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	if tk := findTask(t, rec, "by-param"); !tk.Skipped {
		t.Errorf("by-param ran with mode=fast")
	}
}

func TestParams(t *testing.T) {
	tr := newTestRun(t)
	tr.opts.Params = map[string]string{"required": "req", "who": "you"}
	rec, err := Run(context.Background(), load(t, "testdata/params.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	wantParams := map[string]string{
		"greeting": "hello", "who": "you", "message": "hello, you", "list": `["a","b c"]`,
		"conf": `{"host":"example.org","port":"443"}`, "required": "req",
	}
	if diff := cmp.Diff(wantParams, rec.Params); diff != "" {
		t.Errorf("effective params (-want +got):\n%s", diff)
	}
	ws := filepath.Join(tr.opts.WorkDir, "workspaces", "out")
	got, err := os.ReadFile(filepath.Join(ws, "args.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := "hello, you|a|b c|b c|example.org|fallback|req|params-test-run|params-test-run-inline|params|"
	if string(got) != want {
		t.Errorf("substituted args:\n got %s\nwant %s", got, want)
	}
	got, err = os.ReadFile(filepath.Join(ws, "consumed.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "req-1|req-2|8443|" {
		t.Errorf("array/object results passed on: %s", got)
	}
	wantResults := map[string]string{"words": `["req-1","req-2"]`, "first-word": "req-1", "host": "h.example"}
	if diff := cmp.Diff(wantResults, rec.Results); diff != "" {
		t.Errorf("pipeline results (-want +got):\n%s", diff)
	}
	inline := findStep(t, rec, "inline.write")
	if diff := cmp.Diff([]string{"hello, you", "a", "b c", "b c", "example.org", "fallback", "req", "params-test-run", "params-test-run-inline", "params"}, inline.Args); diff != "" {
		t.Errorf("recorded args (-want +got):\n%s", diff)
	}
	if p := findTask(t, rec, "produce"); p.TaskRef != "produce" || p.Results["info"] != `{"host":"h.example","port":"8443"}` {
		t.Errorf("produce task record: %+v", p)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
}

// TestBadInput: each refusal is ErrInvalid with a one-line message naming
// what is wrong, and nothing is written to the link directory.
func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		name, file string
		params     map[string]string
		setup      func(t *testing.T, o *Options)
		want       []string
	}{
		{"unknown param", "badinput.yaml", map[string]string{"required": "x", "nope": "1"}, nil, []string{`unknown param "nope"`, "required, list"}},
		{"missing param", "badinput.yaml", nil, nil, []string{"required"}},
		{"array param not JSON", "badinput.yaml", map[string]string{"required": "x", "list": "a,b"}, nil, []string{`param "list" is an array`}},
		{"unbound workspace", "badinput.yaml", map[string]string{"required": "x"}, nil, []string{"pipeline task unbound", `declared workspace "data" is required but has not been bound`}},
		{"unresolvable reference", "unresolved.yaml", nil, nil, []string{"pipeline task creds step use", "$(credentials.path)"}},
		{"script cannot be written", "when.yaml", nil, func(t *testing.T, o *Options) {
			if err := os.WriteFile(filepath.Join(o.WorkDir, "scripts"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"pipeline task check step decide: cannot write script"}},
		{"signer missing", "when.yaml", nil, func(t *testing.T, o *Options) {
			o.Signers = func(step string) ([]signing.Signer, error) {
				if step == "guarded.produce" {
					return nil, errors.New("no functionary for this step")
				}
				return []signing.Signer{newSigner(t)}, nil
			}
		}, []string{"step guarded.produce", "no functionary"}},
		{"no link dir", "when.yaml", nil, func(t *testing.T, o *Options) { o.LinkDir = "" }, []string{"no link directory"}},
		{"StepAction param not given", "stepaction-bad.yaml", nil, nil, []string{`pipeline task "greet"`, "StepAction", `"hello"`, "who"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTestRun(t)
			tr.opts.Params = c.params
			if c.setup != nil {
				c.setup(t, &tr.opts)
			}
			_, err := Run(context.Background(), load(t, "testdata/"+c.file, ""), tr.opts)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			rejecttest.Is(t, "bad input", err, reject.ErrMalformed)
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if tr.opts.LinkDir != "" {
				if entries, _ := os.ReadDir(tr.opts.LinkDir); len(entries) > 0 {
					t.Errorf("link directory not empty after refusal: %v", entries)
				}
			}
		})
	}
}

func TestFailingStep(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/fail.yaml", ""), tr.opts)
	var se *StepError
	if !errors.As(err, &se) || !errors.Is(err, ErrStepFailed) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want a *StepError", err)
	}
	rejecttest.Is(t, "failing step", err, reject.ErrStepFailed)
	if se.Step != "t.boom" || se.ExitCode != 3 || !strings.Contains(err.Error(), "t.boom") {
		t.Errorf("StepError = %+v (%v), want step t.boom exit 3", se, err)
	}
	if rec == nil {
		t.Fatal("no record returned with the step error")
	}
	if diff := cmp.Diff([]string{"t.tolerated", "t.boom"}, stepNames(rec)); diff != "" {
		t.Errorf("steps recorded (-want +got):\n%s", diff)
	}
	if s := findStep(t, rec, "t.tolerated"); s.ExitCode != 7 {
		t.Errorf("onError: continue step exit code %d", s.ExitCode)
	}
	boom := findStep(t, rec, "t.boom")
	if boom.ExitCode != 3 || boom.Stderr["sha256"] != sha("failing\n") {
		t.Errorf("failed step record: exit %d stderr %v", boom.ExitCode, boom.Stderr)
	}
	if _, ok := boom.Products["w/partial.txt"]; !ok {
		t.Errorf("failed step's products not recorded: %v", boom.Products.Names())
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
	if !strings.Contains(tr.out.String(), "t.boom ! failing") {
		t.Errorf("stderr not streamed with the step's prefix:\n%s", tr.out.String())
	}
}

func TestEnvAndWorkingDir(t *testing.T) {
	t.Setenv("STEPSEAL_TEST_SECRET", "leaked")
	tr := newTestRun(t)
	if err := os.Mkdir(filepath.Join(tr.opts.DefaultWorkingDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec, err := Run(context.Background(), load(t, "testdata/envwd.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(tr.opts.WorkDir, "workspaces", "w")
	res := findTask(t, rec, "t").Results
	want := map[string]string{
		"env":    "from-step template-only " + ws,
		"secret": "unset",
		"wd":     filepath.Join(ws, "made/here") + "\n",
		"wd2":    filepath.Join(tr.opts.DefaultWorkingDir, "sub") + "\n",
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	env := findStep(t, rec, "t.env")
	if diff := cmp.Diff(map[string]string{"A": "from-step", "B": "/workspace/w", "C": "template-only"}, env.Env); diff != "" {
		t.Errorf("recorded env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"env": want["env"], "secret": "unset"}, env.Results); diff != "" {
		t.Errorf("results attributed to t.env (-want +got):\n%s", diff)
	}
	inws := findStep(t, rec, "t.in-workspace")
	if _, ok := inws.Products["w/made/here/file.txt"]; !ok || len(inws.Materials) != 0 {
		t.Errorf("t.in-workspace materials %v products %v", inws.Materials.Names(), inws.Products.Names())
	}
	rel := findStep(t, rec, "t.relative")
	if diff := cmp.Diff([]string{"sh"}, rel.Command); diff != "" || rel.WorkingDir != "sub" {
		t.Errorf("t.relative command %v workingDir %s", rel.Command, rel.WorkingDir)
	}

	// An explicit Env replaces the default host environment.
	tr2 := newTestRun(t)
	tr2.opts.Env = []string{"PATH=" + os.Getenv("PATH"), "STEPSEAL_TEST_SECRET=given"}
	tr2.opts.DefaultWorkingDir = tr.opts.DefaultWorkingDir
	rec, err = Run(context.Background(), load(t, "testdata/envwd.yaml", ""), tr2.opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := findTask(t, rec, "t").Results["secret"]; got != "given" {
		t.Errorf("Options.Env not passed: %q", got)
	}
}

func TestSubPath(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/subpath.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	put := findStep(t, rec, "write.put")
	if diff := cmp.Diff([]string{"shared/out/x/f.txt"}, put.Products.Names()); diff != "" {
		t.Errorf("subPath products are named by the pipeline workspace (-want +got):\n%s", diff)
	}
	cat := findStep(t, rec, "read.cat")
	if diff := cmp.Diff(put.Products, cat.Materials); diff != "" {
		t.Errorf("the whole-workspace reader sees the same artifact (-products +materials):\n%s", diff)
	}
	if cat.Stdout["sha256"] != sha("hi\n") {
		t.Errorf("read.cat stdout digest %v", cat.Stdout)
	}

	tr = newTestRun(t)
	tr.opts.Params = map[string]string{"dir": "../escape"}
	if _, err := Run(context.Background(), load(t, "testdata/subpath.yaml", ""), tr.opts); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "subPath") {
		t.Errorf("subPath leaving the workspace: err = %v", err)
	}
}

func TestStepTimeout(t *testing.T) {
	tr := newTestRun(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	tr.opts.Params = map[string]string{"pidfile": pidfile}
	start := time.Now()
	rec, err := Run(context.Background(), load(t, "testdata/timeout.yaml", ""), tr.opts)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrStepFailed) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	rejecttest.Is(t, "timed-out step", err, reject.ErrStepFailed)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timeout of 1s took %s", d)
	}
	var se *StepError
	if errors.As(err, &se); se.Step != "t.slow" || se.Timeout != time.Second || se.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("StepError %+v", se)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
	// The background sleep the step started was killed with it.
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background process %d of the timed-out step is still running", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isZombie: a killed process whose parent died waits for init to reap it.
func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

// Tekton fails a step its timeout killed even when the step has
// onError: continue (its entrypoint checks the deadline first); the run
// stops there and the link records the timeout.
func TestStepTimeoutFailsDespiteOnErrorContinue(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/timeout-continue.yaml", ""), tr.opts)
	var se *StepError
	if !errors.As(err, &se) || !errors.Is(err, ErrTimeout) || se.Step != "t.slow" {
		t.Fatalf("err = %v, want the timeout of t.slow", err)
	}
	if diff := cmp.Diff([]string{"t.slow"}, stepNames(rec)); diff != "" {
		t.Errorf("steps run after a timed-out onError: continue step (-want +got):\n%s", diff)
	}
	if s := findStep(t, rec, "t.slow"); !s.TimedOut {
		t.Errorf("the record does not say t.slow timed out: %+v", s)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
}

func TestTaskTimeout(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/task-timeout.yaml", ""), tr.opts)
	var se *StepError
	if !errors.As(err, &se) || !errors.Is(err, ErrTimeout) || se.Step != "t.slow" || se.Timeout != time.Second {
		t.Fatalf("err = %v, want a task timeout of 1s in t.slow", err)
	}
	if diff := cmp.Diff([]string{"t.first", "t.slow"}, stepNames(rec)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCanceled(t *testing.T) {
	tr := newTestRun(t)
	ctx, cancel := context.WithCancel(context.Background())
	tr.opts.Params = map[string]string{"pidfile": filepath.Join(t.TempDir(), "pid")}
	time.AfterFunc(500*time.Millisecond, cancel)
	_, err := Run(ctx, load(t, "testdata/timeout.yaml", ""), tr.opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(tr.opts.LinkDir); len(entries) > 0 {
		t.Errorf("interrupted step left links: %v", entries)
	}
}

func TestScripts(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/scripts.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"shell": "bash", "args": "one,two words,"}, findTask(t, rec, "t").Results); diff != "" {
		t.Errorf("shebang and args (-want +got):\n%s", diff)
	}
	if s := findStep(t, rec, "t.set-e"); s.ExitCode != 1 || len(s.Products) != 0 {
		t.Errorf("a script without shebang runs with set -e: exit %d, products %v", s.ExitCode, s.Products.Names())
	}
	bash := findStep(t, rec, "t.bash")
	if got := bash.ExecutedCommand(); len(got) != 4 || got[0] != "/usr/bin/env" || got[1] != "bash" || got[2] != "-c" {
		t.Errorf("recorded command %q", got)
	}
}

func TestExclude(t *testing.T) {
	tr := newTestRun(t)
	tr.opts.Exclude = []string{"*.txt"}
	rec, err := Run(context.Background(), load(t, "testdata/subpath.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	if s := findStep(t, rec, "write.put"); len(s.Products) != 0 {
		t.Errorf("excluded file recorded: %v", s.Products.Names())
	}
}

// TestReusedWorkDir: workspaces keep their files between runs (like a
// PersistentVolumeClaim, so the second run's first step has them as
// materials); results and scripts start afresh.
func TestReusedWorkDir(t *testing.T) {
	tr := newTestRun(t)
	spec := load(t, "testdata/subpath.yaml", "")
	if _, err := Run(context.Background(), spec, tr.opts); err != nil {
		t.Fatal(err)
	}
	tr.opts.LinkDir = t.TempDir()
	rec, err := Run(context.Background(), spec, tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := findStep(t, rec, "write.put").Materials.Names(); len(got) != 1 || got[0] != "shared/out/x/f.txt" {
		t.Errorf("second run's materials %v", got)
	}
	checkLinks(t, tr.opts.LinkDir, rec, func(string) signing.Signer { return tr.signer })
}

// A PipelineRun's timeouts.pipeline bounds its tasks: the step it kills
// fails with ErrTimeout and the tasks after it do not run.
func TestRunFileTimeout(t *testing.T) {
	tr := newTestRun(t)
	start := time.Now()
	rec, err := Run(context.Background(), load(t, "testdata/run-timeout.yaml", ""), tr.opts)
	var se *StepError
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &se) || se.Step != "slow.sleep" {
		t.Fatalf("err = %v, want the run's timeout in slow.sleep", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timeouts.pipeline 2s took %s", d)
	}
	if steps := rec.AllSteps(); len(steps) != 2 || !steps[1].TimedOut {
		t.Errorf("steps = %+v", steps)
	}
	if !strings.Contains(err.Error(), "slow.sleep") {
		t.Errorf("error %q does not name the step", err)
	}
}

// The run's params (the caller's -p overriding them), ConfigMap and Secret
// files written read-only before the step, a claim as a directory named
// after it.
func TestRunFileBindings(t *testing.T) {
	tr := newTestRun(t)
	tr.opts.Params = map[string]string{"who": "caller"}
	rec, err := Run(context.Background(), load(t, "testdata/run-sources.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Params["who"] != "caller" || rec.Params["punctuation"] != "." {
		t.Errorf("params = %v", rec.Params)
	}
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "claims", "results", "msg"))
	if err != nil || string(b) != "hello caller. t0k3n\n" {
		t.Errorf("msg = %q, %v", b, err)
	}
	for _, f := range []string{"workspaces/config/greeting", "workspaces/secret/token"} {
		fi, err := os.Stat(filepath.Join(tr.opts.WorkDir, f))
		if err != nil || fi.Mode().Perm() != 0o444 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}
	// The step saw them as materials, under the pipeline workspace's name.
	st := rec.AllSteps()[0]
	if _, ok := st.Materials["config/greeting"]; !ok {
		t.Errorf("materials = %v", st.Materials)
	}
	if _, ok := st.Products["out/msg"]; !ok {
		t.Errorf("products = %v", st.Products)
	}
	// Running again into the same work directory (files already read-only)
	// works.
	if _, err := Run(context.Background(), load(t, "testdata/run-sources.yaml", ""), tr.opts); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

func TestRunFileOptionalWorkspaceUnbound(t *testing.T) {
	tr := newTestRun(t)
	if _, err := Run(context.Background(), load(t, "testdata/run-optional.yaml", ""), tr.opts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "a", "x"))
	if err != nil || string(b) != "bound=false\n" {
		t.Errorf("x = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(tr.opts.WorkDir, "workspaces", "cache")); !os.IsNotExist(err) {
		t.Errorf("an unbound workspace got a directory: %v", err)
	}
}

// $(steps.step-<name>.exitCode.path) is the file Tekton's entrypoint
// writes a step's exit code to; the link records the Pod's path.
func TestStepExitCodePath(t *testing.T) {
	tr := newTestRun(t)
	rec, err := Run(context.Background(), load(t, "testdata/exitcode.yaml", ""), tr.opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "w", "codes"))
	if err != nil || string(b) != "7 2\n" {
		t.Errorf("codes = %q, %v; want the earlier steps' exit codes", b, err)
	}
	if s := findStep(t, rec, "t.report"); !strings.Contains(s.Script, "/tekton/steps/step-lint/exitCode") || strings.Contains(s.Script, tr.opts.WorkDir) {
		t.Errorf("recorded script %q: want the Pod's path, not the host's", s.Script)
	}
}

// A run file's names are what $(context…) shows on a cluster: the
// PipelineRun's metadata.name and namespace, Tekton's TaskRun name for its
// tasks, a TaskRun file's own name; $(context.pipelineTask.retries) is the
// pipeline task's retries.
func TestRunFileContext(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"run-context.yaml", "ctx-run team-a ctx-run-t 3\n"},
		{"run-context-taskrun.yaml", "ctx-taskrun ctx-taskrun\n"},
		{"run-context-generated.yaml", "gen-run-test-run default gen-run-test-run-t other-name\n"},
	} {
		t.Run(c.file, func(t *testing.T) {
			tr := newTestRun(t)
			if _, err := Run(context.Background(), load(t, "testdata/"+c.file, ""), tr.opts); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(tr.opts.WorkDir, "workspaces", "w", "ctx"))
			if err != nil || string(b) != c.want {
				t.Errorf("ctx = %q, %v; want %q", b, err, c.want)
			}
		})
	}
}

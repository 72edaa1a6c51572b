package generate

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// ErrMatrix: a pipeline task fans out with a matrix, which the generated
// layout cannot express (one layout step per Task step).
var ErrMatrix = reject.Sentinel(reject.ErrUnsupported, "matrix fan-out is not supported")

// FromPipeline generates the in-toto layout of a pipeline. keys maps each
// functionary name of f to its public key; every functionary that some step
// needs must have one, and the layout lists the keys of all functionaries f
// declares. Keys under other names are ignored.
//
// The layout has one step per Task step, named "<pipelineTask>.<step>"
// ("<pipelineTask>.unnamed-<i>" for a step without a name, as Tekton names
// it), in spec.Order(), then the finally tasks' (spec.Finally()). Its
// expected_command is opts.Commands[step] when given (the command after
// Tekton's substitution of what is known before the run, see
// localrun.Commands), else the step's unsubstituted command and args, or
// run.ScriptCommand of its script; in-toto only warns when the executed
// command differs.
//
// Artifact rules follow the workspaces, region by region. A pipeline task P
// that binds pipeline workspace W sees a region R of it: the whole of W, or,
// when every binding of W in P has a subPath, the subPath (the deepest
// directory holding them all when they differ; the whole of W when a
// subPath is a parameter, known only at run time). Its pattern pat(R) is
// W/** or W/<R>/**, the names the runner records for P's files there.
//
// For step S of P, prev(S, W) is the previous step of P, matched on pat(R),
// or, for P's first step, the last step of each nearest ancestor task
// (through runAfter and result references) that binds a region of W
// overlapping R, matched on the part of R it saw. Nearest means no other
// such task lies between them: the walk back stops at a task whose region
// covers R and goes on past one that saw only part of R (writers of
// disjoint subPaths, one after the other, are all prev of a reader of the
// whole W), and a candidate is dropped when a later one (a task it is an
// ancestor of) saw all it saw of R, since the later task's products are
// what P sees there. Tasks on parallel branches are not each other's prev.
// The MATCH rules go narrowest part first; a part is closed with
// DISALLOW W/<part>/** after its rules when every candidate that saw more
// than it is an ancestor of one that saw it (so a file there cannot be
// passed off as an older task's version). A finally task's ancestors are
// all DAG tasks (it runs after every one of them); finally tasks are not
// each other's prev, as Tekton runs them in parallel. Then, per W in name
// order:
//
//	materials, writable W:   the prev rules                        (MATCH … WITH PRODUCTS FROM p)
//	materials, read-only W:  MATCH pat(R) WITH PRODUCTS FROM S     (if prev is not empty)
//	products, writable W:    ALLOW pat(R)
//	products, read-only W:   the prev rules
//
// and both lists end with DISALLOW *. Without subPaths every region is the
// whole of W and the prev rules are MATCH W/** WITH PRODUCTS FROM p, each p
// in prev. A first touch of R (empty prev) so requires it to be empty in the
// materials. For a read-only W, every material must be a product of the step
// itself with the same digest, and every product one of prev's: a file the
// step modifies, creates or deletes is rejected. A Task workspace is
// read-only when the Task declares it readOnly and every binding of W in P
// is.
//
// in-toto's MATCH only ties what a step reports to what prev produced; it
// cannot demand that every file prev produced is still there. So a file
// removed between two steps (by no step) goes unnoticed, and a writable step
// may change its workspace as it likes: its products are ALLOWed, and the next
// step's materials are tied to them.
//
// A workspace the run binds to a ConfigMap or Secret is read-only (as
// Kubernetes mounts it) and starts with the files the run file gives it: at
// its first touch the materials ALLOW each of those files by name, and the
// products MATCH W/** WITH MATERIALS FROM S (nothing created or changed).
//
// A task that may be retried (retries > 0) starts over in the workspaces
// its failed attempt wrote to, as Tekton does not reset them: its first
// step's materials end, for each writable W, with ALLOW W/** after the
// MATCH rules (the failed attempts' links keep what they did; the layout
// verifies the last attempt).
//
// When f declares an output "<W>/<path>", the last step (in order) of the last
// task binding W writable, in a region holding <path>, starts its products
// with REQUIRE <W>/<path>.
func FromPipeline(spec *tekton.Spec, f *layout.Functionaries, keys map[string]in_toto.Key, opts layout.Options) (*in_toto.Layout, error) {
	if spec == nil || spec.Pipeline == nil || f == nil {
		return nil, fmt.Errorf("%w: a pipeline and a functionaries file are required", layout.ErrLayout)
	}
	g, err := newGraph(spec)
	if err != nil {
		return nil, err
	}
	layoutKeys, err := checkKeys(f, keys)
	if err != nil {
		return nil, err
	}
	outStep, err := g.outputStep(f.Spec.Output)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: spec.output: %w", layout.ErrLayout, f.Path, err)
	}

	l := &in_toto.Layout{
		Type:    "layout",
		Steps:   []in_toto.Step{},
		Inspect: []in_toto.Inspection{},
		Keys:    layoutKeys,
		Readme:  opts.Readme,
	}
	if l.Readme == "" {
		l.Readme = fmt.Sprintf("Generated by stepseal from Tekton Pipeline %q: one step per Task step, "+
			"named <pipelineTask>.<step>; artifact rules follow the pipeline's workspaces.", spec.Pipeline.Name)
	}
	// Steps with onError: continue may fail; stepseal's verifier reads
	// these signed readme lines (in-toto-golang ignores the readme).
	var mayFail []string
	for _, t := range g.tasks {
		mayFail = append(mayFail, t.mayFail...)
	}
	if len(mayFail) > 0 {
		l.Readme = strings.TrimRight(l.Readme, "\n") + "\n" + attest.OnErrorContinueLines(mayFail)
	}
	if err := g.addSkipRules(spec, f, keys, opts, l); err != nil {
		return nil, err
	}
	exp := opts.Expires
	if exp.IsZero() {
		exp = time.Now().Add(f.ExpiresIn())
	}
	if !exp.After(time.Now()) {
		return nil, fmt.Errorf("%w: expiry %s is in the past", layout.ErrLayout, exp.UTC().Format(time.RFC3339))
	}
	l.Expires = exp.UTC().Format(in_toto.ISO8601DateSchema)

	for _, t := range g.tasks {
		for i, name := range t.steps {
			st := in_toto.Step{
				Type:            "step",
				ExpectedCommand: t.commands[i],
				SupplyChainItem: in_toto.SupplyChainItem{Name: name},
			}
			if c, ok := opts.Commands[name]; ok {
				st.ExpectedCommand = append([]string{}, c...)
			}
			st.PubKeys, st.Threshold, err = stepKeys(f, keys, name)
			if err != nil {
				return nil, err
			}
			st.ExpectedMaterials, st.ExpectedProducts = g.rules(t, i)
			if name == outStep {
				st.ExpectedProducts = append([][]string{{"REQUIRE", f.Spec.Output}}, st.ExpectedProducts...)
			}
			if sk := t.skipKey; sk != nil && !slices.Contains(st.PubKeys, sk.KeyID) {
				st.PubKeys = append(st.PubKeys, sk.KeyID)
				sort.Strings(st.PubKeys)
			}
			l.Steps = append(l.Steps, st)
		}
	}
	if err := layout.Validate(*l); err != nil {
		return nil, err
	}
	return l, nil
}

// checkKeys verifies that the key of every declared functionary matches its
// key ID, and indexes those keys by ID. Keys of names f does not declare (a
// caller's owner key, say) are left out of the layout.
func checkKeys(f *layout.Functionaries, keys map[string]in_toto.Key) (map[string]in_toto.Key, error) {
	byID := map[string]in_toto.Key{}
	for _, name := range f.Names() {
		k, ok := keys[name]
		if !ok {
			continue // an error only if a step needs it, see stepKeys
		}
		if _, err := signing.VerifierFromInTotoKey(k); err != nil {
			return nil, fmt.Errorf("%w: key of functionary %s: %w", layout.ErrLayout, name, err)
		}
		byID[k.KeyID] = k
	}
	return byID, nil
}

// stepKeys returns the key IDs that may sign step and the threshold.
func stepKeys(f *layout.Functionaries, keys map[string]in_toto.Key, step string) ([]string, int, error) {
	names, threshold, err := f.For(step)
	if err != nil {
		return nil, 0, err
	}
	seen := map[string]string{}
	ids := []string{}
	for _, n := range names {
		k, ok := keys[n]
		if !ok {
			return nil, 0, fmt.Errorf("%w: step %s: no public key for functionary %s", layout.ErrLayout, step, n)
		}
		if other, dup := seen[k.KeyID]; dup {
			return nil, 0, fmt.Errorf("%w: step %s: functionaries %s and %s have the same key %.8s, a threshold would count it once", layout.ErrLayout, step, other, n, k.KeyID)
		}
		seen[k.KeyID] = n
		ids = append(ids, k.KeyID)
	}
	sort.Strings(ids)
	return ids, threshold, nil
}

// graph is the pipeline reduced to what the rules need: tasks in order, their
// steps, and which pipeline workspaces they bind.
type graph struct {
	tasks  []*task
	byName map[string]*task
	// workspaces declared by the Pipeline.
	workspaces map[string]bool
	// sources maps a workspace the run binds to a ConfigMap or Secret to
	// the artifact names of the files it starts with.
	sources map[string][]string
}

type task struct {
	name  string
	index int
	// steps are the layout step names, commands their expected commands.
	steps    []string
	commands [][]string
	// mayFail are the steps with onError: continue.
	mayFail []string
	// retried: the task may be retried (retries > 0), so its first step
	// may find what a failed attempt left in its workspaces.
	retried bool
	// binds maps a pipeline workspace to true when the task may write it.
	binds map[string]bool
	// region maps a pipeline workspace the task binds to the part of it the
	// task sees: "" for the whole workspace, else the subPath its
	// bindings share (see taskRegion).
	region map[string]string
	// wsNames are the keys of binds, sorted.
	wsNames []string
	deps    []*task
	// pt is the pipeline task as the Pipeline writes it.
	pt v1.PipelineTask
	// final: a finally task.
	final bool
	// skipKey is set when the task may be skipped: the key of its skip
	// records, which its steps' pubkeys then include.
	skipKey *in_toto.Key
	// ancestors holds every task this one transitively depends on.
	ancestors map[*task]bool
	// recorded is what the controller's links of its steps record beyond
	// workspaces (results, type-hinted outputs, step artifacts).
	recorded recorded
}

func newGraph(spec *tekton.Spec) (*graph, error) {
	order, err := spec.Order()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", layout.ErrLayout, err)
	}
	g := &graph{byName: map[string]*task{}, workspaces: map[string]bool{}}
	for _, w := range spec.Pipeline.Spec.Workspaces {
		g.workspaces[w.Name] = true
	}
	if spec.Run != nil {
		g.sources = map[string][]string{}
		for w, files := range spec.Run.Sources {
			for _, f := range files {
				g.sources[w] = append(g.sources[w], w+"/"+f.Path)
			}
		}
	}
	dag := len(order)
	for i, pt := range append(order, spec.Finally()...) {
		t := &task{name: pt.Name, index: i, binds: map[string]bool{}, region: map[string]string{}, pt: pt, final: i >= dag, retried: pt.Retries > 0}
		if pt.IsMatrixed() {
			return nil, fmt.Errorf("%s: pipeline task %q: %w: Tekton runs one TaskRun per combination and each signs links named %s.<step>, "+
				"so one layout step could not say which combination it verified; write one pipeline task per combination", spec.Path, pt.Name, ErrMatrix, pt.Name)
		}
		ts := spec.Tasks[pt.Name]
		if ts == nil {
			return nil, fmt.Errorf("%w: %s: pipeline task %q has no resolved Task", layout.ErrLayout, spec.Path, pt.Name)
		}
		// Steps that reference a StepAction are the StepAction's steps, as
		// the local runner and Tekton's reconciler resolve them (without a
		// TaskRun's params: the expected command is unsubstituted).
		resolved, err := spec.ResolveSteps(context.Background(), pt.Name, ts, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", layout.ErrLayout, err)
		}
		steps, err := v1.MergeStepsWithStepTemplate(ts.StepTemplate, resolved)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: pipeline task %q: stepTemplate: %w", layout.ErrLayout, spec.Path, pt.Name, err)
		}
		var status []string
		for j, s := range steps {
			if s.Ref != nil {
				return nil, fmt.Errorf("%w: %s: pipeline task %q step %d: StepAction reference not resolved", layout.ErrLayout, spec.Path, pt.Name, j)
			}
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("unnamed-%d", j)
			}
			status = append(status, name)
			t.steps = append(t.steps, run.StepName(pt.Name, name))
			t.commands = append(t.commands, expectedCommand(s))
			switch s.OnError {
			case "", v1.StopAndFail:
			case v1.Continue:
				t.mayFail = append(t.mayFail, run.StepName(pt.Name, name))
			default:
				// Tekton allows a parameter here; the layout must say
				// before the run whether the step may fail.
				return nil, fmt.Errorf("%w: %s: pipeline task %q step %q: onError %q: only %q or %q can be written into a layout (not a parameter)", layout.ErrLayout, spec.Path, pt.Name, name, s.OnError, v1.Continue, v1.StopAndFail)
			}
		}
		t.recorded = recordedOf(ts, steps, status)
		subs := map[string][]string{}
		for _, b := range spec.Workspaces(pt) {
			// Several task workspaces may share one pipeline workspace: the
			// task may write it if any binding may.
			writable, seen := t.binds[b.PipelineWorkspace]
			t.binds[b.PipelineWorkspace] = (seen && writable) || !b.ReadOnly
			subs[b.PipelineWorkspace] = append(subs[b.PipelineWorkspace], b.SubPath)
		}
		for w, ss := range subs {
			t.region[w] = taskRegion(ss)
		}
		for w := range t.binds {
			t.wsNames = append(t.wsNames, w)
		}
		sort.Strings(t.wsNames)
		g.tasks = append(g.tasks, t)
		g.byName[t.name] = t
	}
	for name, deps := range spec.Deps() {
		t, ok := g.byName[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s: dependencies of unknown task %q", layout.ErrLayout, spec.Path, name)
		}
		for _, d := range deps {
			dt, ok := g.byName[d]
			if !ok {
				return nil, fmt.Errorf("%w: %s: pipeline task %q depends on unknown task %q", layout.ErrLayout, spec.Path, name, d)
			}
			t.deps = append(t.deps, dt)
		}
	}
	// A finally task runs after every DAG task: all are its dependencies
	// (prevTasks keeps the nearest that bind a workspace). Finally tasks
	// are not each other's, as Tekton starts them together.
	for _, f := range g.tasks[dag:] {
		f.deps = append([]*task(nil), g.tasks[:dag]...)
	}
	// Tasks are in topological order, so every dependency's ancestors are
	// known when a task is reached.
	for _, t := range g.tasks {
		sort.Slice(t.deps, func(i, j int) bool { return t.deps[i].index < t.deps[j].index })
		t.ancestors = map[*task]bool{}
		for _, d := range t.deps {
			if d.ancestors == nil {
				return nil, fmt.Errorf("%w: %s: pipeline task %q runs before its dependency %q", layout.ErrLayout, spec.Path, t.name, d.name)
			}
			t.ancestors[d] = true
			for a := range d.ancestors {
				t.ancestors[a] = true
			}
		}
	}
	return g, nil
}

func expectedCommand(s v1.Step) []string {
	if s.Script != "" {
		return run.ScriptCommand(s.Script)
	}
	out := make([]string, 0, len(s.Command)+len(s.Args))
	out = append(out, s.Command...)
	return append(out, s.Args...)
}

// taskRegion is the region of a pipeline workspace a task's bindings of
// it (with subPaths subs) see: the whole workspace ("") when one binding
// has no subPath or its subPath is not a plain relative path (a parameter,
// substituted only at run time), else the deepest directory holding every
// subPath (the subPath itself when there is one).
func taskRegion(subs []string) string {
	var out string
	for i, s := range subs {
		if s == "" || strings.Contains(s, "$(") || !filepath.IsLocal(s) {
			return ""
		}
		s = path.Clean(filepath.ToSlash(s))
		if i == 0 {
			out = s
			continue
		}
		for !within(s, out) {
			if out = path.Dir(out); out == "." {
				return ""
			}
		}
	}
	return out
}

// within reports whether region a lies inside region b ("" is the whole
// workspace).
func within(a, b string) bool {
	return b == "" || a == b || strings.HasPrefix(a, b+"/")
}

// overlap reports whether regions a and b share files.
func overlap(a, b string) bool { return within(a, b) || within(b, a) }

// intersect is the region a and b share, for overlapping regions.
func intersect(a, b string) string {
	if within(a, b) {
		return a
	}
	return b
}

// pattern is the artifact pattern of region sub of workspace w.
func pattern(w, sub string) string {
	if sub == "" {
		return w + "/**"
	}
	return w + "/" + sub + "/**"
}

// depth is the number of path elements of a region ("" has none).
func depth(sub string) int {
	if sub == "" {
		return 0
	}
	return strings.Count(sub, "/") + 1
}

// source is one task that left files in a region a step sees: the part of
// the step's region it saw (sub) and its last step.
type source struct {
	task *task
	sub  string
}

// prevTasks returns the nearest ancestors of t that bind a region of w
// overlapping r, each with the part of r it saw, in order. A walk back
// through the dependencies stops at a task whose region covers r; a task
// that saw only part of r is a candidate and the walk goes on past it, to
// the tasks that left the rest. A candidate is dropped when a later
// candidate (one it is an ancestor of) saw all of what it saw of r, since
// the later task's products are what t sees there.
func (g *graph) prevTasks(t *task, w, r string) []source {
	cands := map[*task]bool{}
	visited := map[*task]bool{}
	var walk func(*task)
	walk = func(x *task) {
		for _, d := range x.deps {
			if visited[d] {
				continue
			}
			visited[d] = true
			if sub, binds := d.region[w]; binds && overlap(sub, r) {
				cands[d] = true
				if within(r, sub) {
					continue
				}
			}
			walk(d)
		}
	}
	walk(t)
	var out []source
	for c := range cands {
		seen := intersect(c.region[w], r)
		shadowed := false
		for o := range cands {
			if o != c && o.ancestors[c] && within(seen, o.region[w]) {
				shadowed = true
				break
			}
		}
		if !shadowed {
			out = append(out, source{task: c, sub: seen})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].task.index < out[j].task.index })
	return out
}

// prevRules are the rules tying what step i of t sees of region r of w to
// the products of the steps that left it (prev): the previous step of t,
// or, for t's first step, the last step of each task prevTasks returns,
// matched on the part of r it saw, narrowest parts first. When every
// candidate that saw more than such a part is an ancestor of a candidate
// that saw that part, the part is closed with DISALLOW after its MATCH
// rules (unless strict is false): a file there that is not what those
// candidates produced cannot be passed off as an older candidate's.
func (g *graph) prevRules(t *task, i int, w, r string, strict bool) [][]string {
	if i > 0 {
		return [][]string{matchProducts(pattern(w, r), t.steps[i-1])}
	}
	srcs := g.prevTasks(t, w, r)
	// Narrowest parts first, each part's candidates together (in task
	// order), so a part is closed only after all its MATCH rules.
	sort.SliceStable(srcs, func(a, b int) bool {
		if da, db := depth(srcs[a].sub), depth(srcs[b].sub); da != db {
			return da > db
		}
		return srcs[a].sub < srcs[b].sub
	})
	var rules [][]string
	for k := 0; k < len(srcs); {
		sub := srcs[k].sub
		var group []*task
		for ; k < len(srcs) && srcs[k].sub == sub; k++ {
			group = append(group, srcs[k].task)
			rules = append(rules, matchProducts(pattern(w, sub), srcs[k].task.steps[len(srcs[k].task.steps)-1]))
		}
		if !strict || sub == r {
			continue
		}
		closed, broader := true, false
		for _, o := range srcs[k:] {
			if o.sub == sub || !within(sub, o.sub) {
				continue
			}
			broader = true
			after := false
			for _, c := range group {
				if c.ancestors[o.task] {
					after = true
					break
				}
			}
			if !after {
				closed = false
				break
			}
		}
		if closed && broader {
			rules = append(rules, []string{"DISALLOW", pattern(w, sub)})
		}
	}
	return rules
}

// rules returns the expected materials and products of step i of t.
func (g *graph) rules(t *task, i int) (materials, products [][]string) {
	self := t.steps[i]
	materials, products = [][]string{}, [][]string{}
	for _, w := range t.wsNames {
		r := t.region[w]
		pat := pattern(w, r)
		if t.binds[w] {
			// A retry starts in the workspaces a failed attempt wrote to, so
			// no part is closed (the ALLOW below takes what is left).
			materials = append(materials, g.prevRules(t, i, w, r, !(i == 0 && t.retried))...)
			if i == 0 && t.retried {
				// A retry starts in the workspaces a failed attempt wrote
				// to (Tekton does not reset them); those files are in the
				// failed attempt's links, not a layout step's products.
				materials = append(materials, []string{"ALLOW", pat})
			}
			products = append(products, []string{"ALLOW", pat})
			continue
		}
		prev := g.prevRules(t, i, w, r, true)
		if len(prev) > 0 {
			materials = append(materials, matchProducts(pat, self))
		}
		products = append(products, prev...)
		if files := g.sources[w]; len(prev) == 0 && len(files) > 0 {
			// The first touch of a ConfigMap or Secret workspace: it starts
			// with exactly the files the run file gives it (by name; their
			// content is in the run file the provenance names), and the
			// step leaves them as they were.
			for _, f := range files {
				if within(strings.TrimPrefix(f, w+"/"), r) {
					materials = append(materials, []string{"ALLOW", f})
				}
			}
			products = append(products, []string{"MATCH", pat, "WITH", "MATERIALS", "FROM", self})
		}
	}
	recMat, recProd := g.recordedRules(t, i)
	materials = append(append(materials, recMat...), []string{"DISALLOW", "*"})
	products = append(append(products, recProd...), []string{"DISALLOW", "*"})
	return materials, products
}

func matchProducts(pattern, step string) []string {
	return []string{"MATCH", pattern, "WITH", "PRODUCTS", "FROM", step}
}

// outputStep returns the step that must produce output, or "" when there is
// no output.
func (g *graph) outputStep(output string) (string, error) {
	if output == "" {
		return "", nil
	}
	w, _, err := layout.SplitOutput(output)
	if err != nil {
		return "", err
	}
	if !g.workspaces[w] {
		return "", fmt.Errorf("%q: the Pipeline declares no workspace %q", output, w)
	}
	for i := len(g.tasks) - 1; i >= 0; i-- {
		if t := g.tasks[i]; t.binds[w] && within(strings.TrimPrefix(output, w+"/"), t.region[w]) {
			return t.steps[len(t.steps)-1], nil
		}
	}
	return "", fmt.Errorf("%q: no task binds workspace %q writable, so no step can produce it", output, w)
}

// addSkipRules finds the tasks Tekton may skip and declares them in l's
// readme (attest.SkipRule), with the orchestrator's key (opts.SkipKey, else
// the Functionaries file's skipSigner) as the signer of their skip records.
// A DAG task may be skipped when it has when expressions, when a dependency
// may be skipped for another reason than its own when expressions ("Parent
// Tasks were skipped"), or when it uses results of a task that may be
// skipped ("Results were missing"); a finally task when it has when
// expressions or uses such results. These are the rules of Tekton's
// PipelineRun reconciler (a when-expression skip does not cascade to the
// tasks that only runAfter the skipped one).
func (g *graph) addSkipRules(spec *tekton.Spec, f *layout.Functionaries, keys map[string]in_toto.Key, opts layout.Options, l *in_toto.Layout) error {
	key := opts.SkipKey
	if key == nil && f.Spec.SkipSigner != "" {
		k, ok := keys[f.Spec.SkipSigner]
		if !ok {
			return fmt.Errorf("%w: %s: spec.skipSigner: no public key for functionary %s", layout.ErrLayout, f.Path, f.Spec.SkipSigner)
		}
		key = &k
	}
	if key == nil {
		return nil
	}
	if _, err := signing.VerifierFromInTotoKey(*key); err != nil {
		return fmt.Errorf("%w: the key of skip records: %w", layout.ErrLayout, err)
	}
	canSkip := map[string]bool{} // may be skipped at all
	cascade := map[string]bool{} // may be skipped for another reason than its when expressions
	deps := spec.Deps()
	var rules []attest.SkipRule
	for _, t := range g.tasks {
		r := attest.SkipRule{Task: t.name, Steps: t.steps, Keys: []string{key.KeyID}, Finally: t.final}
		for _, ref := range v1.PipelineTaskResultRefs(&t.pt) {
			if canSkip[ref.PipelineTask] && !slices.Contains(r.ResultsFrom, ref.PipelineTask) {
				r.ResultsFrom = append(r.ResultsFrom, ref.PipelineTask)
			}
		}
		if !t.final {
			for _, d := range deps[t.name] {
				if cascade[d] && !slices.Contains(r.Parents, d) {
					r.Parents = append(r.Parents, d)
				}
			}
		}
		sort.Strings(r.ResultsFrom)
		sort.Strings(r.Parents)
		r.When = tekton.When(t.pt.When)
		cascade[t.name] = len(r.Parents) > 0 || len(r.ResultsFrom) > 0
		canSkip[t.name] = cascade[t.name] || len(r.When) > 0
		if !canSkip[t.name] {
			continue
		}
		for _, s := range t.steps {
			ids, _, err := stepKeys(f, keys, s)
			if err != nil {
				return err
			}
			if !slices.Contains(ids, key.KeyID) && !slices.Contains(r.SkipOnlyKeys, key.KeyID) {
				r.SkipOnlyKeys = append(r.SkipOnlyKeys, key.KeyID)
			}
		}
		t.skipKey = key
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil
	}
	lines, err := attest.SkippableLines(rules)
	if err != nil {
		return fmt.Errorf("%w: %w", layout.ErrLayout, err)
	}
	l.Readme = strings.TrimRight(l.Readme, "\n") + "\n" + lines
	l.Keys[key.KeyID] = *key
	return nil
}

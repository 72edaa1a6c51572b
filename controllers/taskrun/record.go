package taskrun

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/pkg/run"
)

// Errors FromTaskRun returns; callers branch with errors.Is.
var (
	// ErrNotDone: the TaskRun has not finished, there is nothing to attest yet.
	ErrNotDone = errors.New("TaskRun has not finished")
	// ErrNothingRan: the TaskRun finished without any step having run to
	// completion (pod never started, timed out while pending, ...).
	ErrNothingRan = errors.New("no step of the TaskRun ran to completion: nothing to attest")
	// ErrMalformed: the TaskRun lacks what every stored TaskRun has (name, UID).
	ErrMalformed = errors.New("malformed TaskRun")
)

// Source is the run.Record.Source of records built by the controller.
const Source = "stepseal/controller"

// TaskResultPrefix + name: a TaskRun result, a product of the last step
// that ran (run.TaskResultName; step results are run.StepResultName).
const TaskResultPrefix = run.TaskResultPrefix

// MaxInlineResult bounds how much of a result's value is copied into the
// record (and from there into the provenance). Larger values are replaced
// by a note with their digest; the digest itself is always among the
// products, so the value stays bound to the attestation either way.
const MaxInlineResult = 4096

// Type hints in result names that mark outputs and inputs, the ones
// Tekton Chains users already write (chains v0.26.3 pkg/artifacts).
const (
	hintImageURL        = run.HintImageURL
	hintImageDigest     = run.HintImageDigest
	hintImages          = run.HintImages
	hintArtifactURI     = run.HintArtifactURI
	hintArtifactDigest  = run.HintArtifactDigest
	hintArtifactOutputs = run.HintArtifactOutputs
	hintArtifactInputs  = run.HintArtifactInputs
)

// stepSkipped is Tekton's terminationReason of a step it did not run
// because an earlier step failed.
const stepSkipped = "Skipped"

// Built is what FromTaskRun extracted from one TaskRun.
type Built struct {
	// Record has one Task (this TaskRun) with one Step per step that ran.
	Record *run.Record
	// Subjects are the TaskRun's declared outputs (type-hinted results and
	// step artifacts marked buildOutput): the subjects of its provenance.
	// Empty when it declared none.
	Subjects run.Artifacts
	// Images are the OCI images among the outputs, "repository@sha256:...".
	Images []string
	// Warnings say which parts of the status were ignored and why.
	Warnings []string
}

// FromTaskRun builds the run.Record of a finished TaskRun from its status and
// spec. It never panics on odd statuses: parts it cannot use are skipped and
// named in Built.Warnings. The mapping:
//
//   - step name: "<pipelineTask>.<step>", pipelineTask being the
//     tekton.dev/pipelineTask label, or the TaskRun's name when it runs alone;
//   - run ID: the owning PipelineRun's UID (label tekton.dev/pipelineRunUID
//     or owner reference), else the TaskRun's UID, so all TaskRuns of one
//     PipelineRun form one in-toto run;
//   - only steps that terminated are recorded; a step Tekton skipped
//     (terminationReason Skipped) or one without a terminated state did not
//     run and gets no link;
//   - command/args/script/workingDir come from status.taskSpec (the spec
//     Tekton resolved), image digest from the step's imageID;
//   - step artifacts (status.steps[].inputs/outputs) are the step's
//     materials/products, keyed by their URI; TaskRun-level artifacts
//     (status.artifacts) not already listed by a step go to the first/last
//     step that ran;
//   - results are products: TaskRun results as "results/<name>" of the last
//     step that ran, step results as "steps/<step>/results/<name>" of their
//     step, each with the sha256 of its value (a string's raw bytes; an
//     array's or object's JSON);
//   - type-hinted results (*IMAGE_URL/*IMAGE_DIGEST, IMAGES,
//     *ARTIFACT_URI/*ARTIFACT_DIGEST, *ARTIFACT_OUTPUTS objects) are products
//     too, named like Chains names subjects (an image by its repository), and
//     are the provenance subjects; *ARTIFACT_INPUTS objects are materials of
//     the first step;
//   - environment variables are not recorded: their values may be secrets.
func FromTaskRun(tr *v1.TaskRun) (*Built, error) {
	if tr == nil {
		return nil, fmt.Errorf("%w: nil", ErrMalformed)
	}
	if !tr.IsDone() {
		return nil, fmt.Errorf("%s/%s: %w", tr.Namespace, tr.Name, ErrNotDone)
	}
	if tr.UID == "" || tr.Name == "" {
		return nil, fmt.Errorf("%w: %s/%s has no name or no UID", ErrMalformed, tr.Namespace, tr.Name)
	}
	b := &builder{tr: tr, out: &Built{Subjects: run.Artifacts{}}}
	return b.build()
}

type builder struct {
	tr  *v1.TaskRun
	out *Built
}

func (b *builder) warnf(format string, args ...any) {
	b.out.Warnings = append(b.out.Warnings, fmt.Sprintf(format, args...))
}

func (b *builder) build() (*Built, error) {
	tr := b.tr
	pipelineTask := tr.Labels[pipeline.PipelineTaskLabelKey]
	if pipelineTask == "" {
		pipelineTask = tr.Name
	}
	taskName := ""
	if tr.Spec.TaskRef != nil {
		taskName = tr.Spec.TaskRef.Name
	}
	if taskName == "" {
		taskName = tr.Labels[pipeline.TaskLabelKey]
	}
	pipelineName := tr.Labels[pipeline.PipelineLabelKey]
	if pipelineName == "" {
		pipelineName = taskName
	}
	if pipelineName == "" {
		pipelineName = tr.Name
	}
	params := paramsOf(tr.Spec.Params)
	rec := &run.Record{
		Pipeline:   pipelineName,
		RunID:      b.runID(),
		Namespace:  tr.Namespace,
		Source:     Source,
		Params:     params,
		StartedAt:  timeOf(tr.Status.StartTime),
		FinishedAt: timeOf(tr.Status.CompletionTime),
	}
	task := run.Task{
		PipelineTask:   pipelineTask,
		TaskRef:        taskName,
		TaskRun:        tr.Name,
		ServiceAccount: tr.Spec.ServiceAccountName,
		Params:         params,
	}

	specs := map[string]v1.Step{}
	spec := tr.Status.TaskSpec
	if spec == nil {
		spec = tr.Spec.TaskSpec
	}
	if spec != nil {
		for i, s := range spec.Steps {
			// The status names a step without a name as Tekton's pod
			// builder does (pod.StepName), and so does the layout.
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("unnamed-%d", i)
			}
			specs[name] = s
		}
	} else {
		b.warnf("no taskSpec in status or spec: steps are recorded without command, args or script")
	}

	for i := range tr.Status.Steps {
		st := &tr.Status.Steps[i]
		if st.Name == "" {
			b.warnf("status.steps[%d] has no name: skipped", i)
			continue
		}
		if st.Terminated == nil {
			b.warnf("step %s has no terminated state: it did not run, no link", st.Name)
			continue
		}
		if st.TerminationReason == stepSkipped {
			b.warnf("step %s was skipped by Tekton: no link", st.Name)
			continue
		}
		task.Steps = append(task.Steps, b.step(pipelineTask, st, specs[st.Name]))
	}
	if len(task.Steps) == 0 {
		return nil, fmt.Errorf("%s/%s: %w", tr.Namespace, tr.Name, ErrNothingRan)
	}

	first, last := &task.Steps[0], &task.Steps[len(task.Steps)-1]
	task.Results = map[string]string{}
	for _, r := range tr.Status.Results {
		if r.Name == "" {
			b.warnf("a TaskRun result has no name: skipped")
			continue
		}
		value, digest := resultValue(r.Value)
		task.Results[r.Name] = inlineValue(value, digest)
		last.Products[run.TaskResultName(r.Name)] = run.DigestSet{"sha256": digest}
	}
	if len(task.Results) == 0 {
		task.Results = nil
	}
	b.typeHints(tr.Status.Results, first, last)
	if a := tr.Status.Artifacts; a != nil {
		listed := func(steps []run.Step, products bool) map[string]bool {
			m := map[string]bool{}
			for _, s := range steps {
				as := s.Materials
				if products {
					as = s.Products
				}
				for k := range as {
					m[k] = true
				}
			}
			return m
		}
		inSteps := listed(task.Steps, false)
		for uri, ds := range b.artifacts("status.artifacts.inputs", a.Inputs, false) {
			if !inSteps[uri] {
				first.Materials[uri] = ds
			}
		}
		outSteps := listed(task.Steps, true)
		for uri, ds := range b.artifacts("status.artifacts.outputs", a.Outputs, true) {
			if !outSteps[uri] {
				last.Products[uri] = ds
			}
		}
	}
	rec.Tasks = []run.Task{task}
	b.out.Record = rec
	sort.Strings(b.out.Images)
	return b.out, nil
}

// runID binds the TaskRun's links to its PipelineRun, or to itself when alone.
func (b *builder) runID() string {
	tr := b.tr
	if uid := tr.Labels[pipeline.PipelineRunUIDLabelKey]; uid != "" {
		return uid
	}
	for _, o := range tr.OwnerReferences {
		if o.Kind == pipeline.PipelineRunControllerName && o.UID != "" {
			return string(o.UID)
		}
	}
	if tr.Labels[pipeline.PipelineTaskLabelKey] != "" {
		b.warnf("TaskRun belongs to pipeline task %q but names no PipelineRun UID: its links are bound to the TaskRun's own UID", tr.Labels[pipeline.PipelineTaskLabelKey])
	}
	return string(tr.UID)
}

func (b *builder) step(pipelineTask string, st *v1.StepState, spec v1.Step) run.Step {
	t := st.Terminated
	s := run.Step{
		Name:       run.StepName(pipelineTask, st.Name),
		Image:      spec.Image,
		Command:    spec.Command,
		Args:       spec.Args,
		WorkingDir: spec.WorkingDir,
		ExitCode:   int(t.ExitCode),
		StartedAt:  t.StartedAt.Time.UTC(),
		FinishedAt: t.FinishedAt.Time.UTC(),
		Materials:  run.Artifacts{},
		Products:   run.Artifacts{},
	}
	if spec.Script != "" {
		s.Script = spec.Script
		d := sha256.Sum256([]byte(spec.Script))
		s.ScriptDigest = hex.EncodeToString(d[:])
	}
	repo, digest := parseImageID(st.ImageID)
	if s.Image == "" {
		s.Image = repo
	}
	if digest == "" {
		b.warnf("step %s: imageID %q names no sha256 digest: the link records the image without one", st.Name, st.ImageID)
	}
	s.ImageDigest = digest
	if s.Image == "" {
		b.warnf("step %s: neither taskSpec nor imageID names its image", st.Name)
	}
	for uri, ds := range b.artifacts("step "+st.Name+" inputs", st.Inputs, false) {
		s.Materials[uri] = ds
	}
	for uri, ds := range b.artifacts("step "+st.Name+" outputs", st.Outputs, true) {
		s.Products[uri] = ds
	}
	for _, r := range st.Results {
		if r.Name == "" {
			b.warnf("step %s: a result has no name: skipped", st.Name)
			continue
		}
		value, digest := resultValue(r.Value)
		if s.Results == nil {
			s.Results = map[string]string{}
		}
		s.Results[r.Name] = inlineValue(value, digest)
		s.Products[run.StepResultName(st.Name, r.Name)] = run.DigestSet{"sha256": digest}
	}
	b.typeHints(st.Results, &s, &s)
	return s
}

// artifacts turns Tekton artifacts into URI -> digests. An artifact value
// without a URI is named "artifacts/<name>"; values with no usable digest
// are skipped with a warning. Outputs marked buildOutput become subjects.
func (b *builder) artifacts(where string, as []v1.Artifact, outputs bool) run.Artifacts {
	out := run.Artifacts{}
	for _, a := range as {
		for i, v := range a.Values {
			uri := v.Uri
			if uri == "" {
				if a.Name == "" {
					b.warnf("%s: an artifact value has neither URI nor artifact name: skipped", where)
					continue
				}
				uri = "artifacts/" + a.Name
				if len(a.Values) > 1 {
					uri = fmt.Sprintf("artifacts/%s/%d", a.Name, i)
				}
			}
			ds := run.DigestSet{}
			for alg, d := range v.Digest {
				if err := checkDigest(string(alg), d); err != nil {
					b.warnf("%s: artifact %s: %v: digest ignored", where, uri, err)
					continue
				}
				ds[strings.ToLower(string(alg))] = strings.ToLower(d)
			}
			if len(ds) == 0 {
				b.warnf("%s: artifact %s has no usable digest: skipped", where, uri)
				continue
			}
			out[uri] = ds
			if outputs && a.BuildOutput {
				b.out.Subjects[uri] = ds
			}
		}
	}
	return out
}

// typeHints applies Chains' result type hints: outputs become products of
// last and subjects, ARTIFACT_INPUTS become materials of first.
func (b *builder) typeHints(results []v1.TaskRunResult, first, last *run.Step) {
	addOutput := func(uri, alg, hex string) {
		ds := run.DigestSet{alg: hex}
		last.Products[uri] = ds
		b.out.Subjects[uri] = ds
	}
	addImage := func(result, ref string) {
		d, err := name.NewDigest(ref)
		if err != nil {
			b.warnf("result %s: %q is not an image reference with a digest: %v", result, ref, err)
			return
		}
		alg, hex, err := splitDigest(d.DigestStr())
		if err != nil || alg != "sha256" {
			b.warnf("result %s: image %q: only sha256 image digests are supported", result, ref)
			return
		}
		repo := d.Repository.Name()
		addOutput(repo, alg, hex)
		b.out.Images = append(b.out.Images, repo+"@sha256:"+hex)
	}
	// *IMAGE_URL/*IMAGE_DIGEST and *ARTIFACT_URI/*ARTIFACT_DIGEST pairs share a prefix.
	for _, pair := range [][2]string{{hintImageURL, hintImageDigest}, {hintArtifactURI, hintArtifactDigest}} {
		uris, digests := map[string]string{}, map[string]string{}
		for _, r := range results {
			v := strings.TrimSpace(r.Value.StringVal)
			if p, ok := strings.CutSuffix(r.Name, pair[0]); ok && v != "" {
				uris[p] = v
			}
			if p, ok := strings.CutSuffix(r.Name, pair[1]); ok && v != "" {
				digests[p] = v
			}
		}
		for _, p := range sortedKeys(uris) {
			d, ok := digests[p]
			if !ok {
				b.warnf("result %s%s has no matching %s%s: not an output", p, pair[0], p, pair[1])
				continue
			}
			if pair[0] == hintImageURL {
				addImage(p+pair[0], uris[p]+"@"+d)
				continue
			}
			alg, hex, err := splitDigest(d)
			if err != nil {
				b.warnf("result %s%s: %v: not an output", p, pair[1], err)
				continue
			}
			addOutput(uris[p], alg, hex)
		}
	}
	for _, r := range results {
		switch {
		case r.Name == hintImages:
			for _, ref := range strings.FieldsFunc(r.Value.StringVal, func(c rune) bool { return c == ',' || c == '\n' }) {
				if ref = strings.TrimSpace(ref); ref != "" {
					addImage(hintImages, ref)
				}
			}
		case strings.HasSuffix(r.Name, hintArtifactOutputs), strings.HasSuffix(r.Name, hintArtifactInputs):
			obj := r.Value.ObjectVal
			if obj == nil || obj["uri"] == "" || obj["digest"] == "" {
				b.warnf("result %s is not an object with uri and digest: ignored", r.Name)
				continue
			}
			alg, hex, err := splitDigest(obj["digest"])
			if err != nil {
				b.warnf("result %s: %v: ignored", r.Name, err)
				continue
			}
			if strings.HasSuffix(r.Name, hintArtifactInputs) {
				first.Materials[obj["uri"]] = run.DigestSet{alg: hex}
			} else {
				addOutput(obj["uri"], alg, hex)
			}
		}
	}
}

// hexLen is the hex length of each digest algorithm accepted in artifacts.
var hexLen = map[string]int{"sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}

func checkDigest(alg, d string) error {
	n, ok := hexLen[strings.ToLower(alg)]
	if !ok {
		return fmt.Errorf("unsupported digest algorithm %q", alg)
	}
	if len(d) != n {
		return fmt.Errorf("%s digest %q is not %d hex digits", alg, truncate(d, 80), n)
	}
	if _, err := hex.DecodeString(d); err != nil {
		return fmt.Errorf("%s digest %q is not hex", alg, truncate(d, 80))
	}
	return nil
}

// splitDigest parses "<alg>:<hex>".
func splitDigest(d string) (alg, hexDigest string, err error) {
	alg, hexDigest, ok := strings.Cut(strings.TrimSpace(d), ":")
	if !ok {
		return "", "", fmt.Errorf("digest %q is not <algorithm>:<hex>", truncate(d, 80))
	}
	alg = strings.ToLower(alg)
	if err := checkDigest(alg, hexDigest); err != nil {
		return "", "", err
	}
	return alg, strings.ToLower(hexDigest), nil
}

// parseImageID splits a container status imageID such as
// "docker-pullable://gcr.io/x/y@sha256:<hex>" into repository and digest.
// An imageID that is only a local image ID ("sha256:<hex>" without a
// repository) identifies the image config, not a pullable manifest, and is
// not reported as the digest.
func parseImageID(id string) (repo, digest string) {
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+3:]
	}
	repo, d, ok := strings.Cut(id, "@")
	if !ok {
		return "", ""
	}
	alg, h, err := splitDigest(d)
	if err != nil || alg != "sha256" {
		return repo, ""
	}
	return repo, "sha256:" + h
}

// resultValue returns a result's value as recorded and the sha256 hex of it:
// a string's raw bytes, an array's or object's JSON (keys sorted).
func resultValue(v v1.ResultValue) (value, digest string) {
	switch v.Type {
	case v1.ParamTypeArray:
		b, _ := json.Marshal(v.ArrayVal)
		value = string(b)
	case v1.ParamTypeObject:
		b, _ := json.Marshal(v.ObjectVal)
		value = string(b)
	default:
		value = v.StringVal
	}
	d := sha256.Sum256([]byte(value))
	return value, hex.EncodeToString(d[:])
}

func inlineValue(value, digest string) string {
	if len(value) <= MaxInlineResult {
		return value
	}
	return fmt.Sprintf("sha256:%s (%d bytes, too large to inline)", digest, len(value))
}

func paramsOf(ps v1.Params) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	out := make(map[string]string, len(ps))
	for _, p := range ps {
		v, _ := resultValue(p.Value)
		out[p.Name] = v
	}
	return out
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time.UTC()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package attest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// SLSA v1 identifiers used in stepseal's provenance.
const (
	PredicateSLSAProvenanceV1 = "https://slsa.dev/provenance/v1"
	// BuildTypePipelineRun describes a Tekton Pipeline run, by the local runner or on a cluster.
	BuildTypePipelineRun = "https://stepseal.dev/buildtypes/tekton-pipelinerun/v1"
	// MediaTypeLink is the media type of an in-toto link file in byproducts.
	MediaTypeLink = "application/vnd.in-toto.link+json"
)

// ProvenanceOptions says what the provenance statement is about.
type ProvenanceOptions struct {
	// Subjects are the artifacts the run delivered (URI -> digests). When
	// empty, the products of the run's last step are used.
	Subjects run.Artifacts
	// LinkSubjects makes the link files (Links) the subjects of a run that
	// declared no output and whose last step produced nothing (a test or
	// lint pipeline), instead of failing: SLSA requires at least one
	// subject, and the signed links are then all the run produced. Each such
	// subject has MediaTypeLink.
	LinkSubjects bool
	// BuilderID identifies the build platform, e.g. "https://stepseal.dev/localrun".
	BuilderID string
	// Definitions are the files that defined the build (pipeline and task
	// files), by path, with their digests.
	Definitions run.Artifacts
	// Links are the signed link files of the run, by file name, with the
	// digests of their bytes; they become byproducts.
	Links run.Artifacts
	// Byproducts are further byproducts, after the links (a PipelineRun's
	// child provenances).
	Byproducts []*intoto.ResourceDescriptor
}

// Covers says what the subjects of a provenance are.
type Covers string

const (
	// CoversOutput: the artifacts the run declared as its output.
	CoversOutput Covers = "declared-output"
	// CoversLastStepProducts: no output was declared; the products of the
	// run's last step.
	CoversLastStepProducts Covers = "last-step-products"
	// CoversLinks: no output was declared and the last step produced
	// nothing; the run's signed link files.
	CoversLinks Covers = "links"
)

// ErrNoSubject: the provenance would have no subject.
var ErrNoSubject = errors.New("no subject")

// Subjects returns what the provenance of rec is about and which of the
// three kinds that is: opts.Subjects, else the last step's products, else
// (with opts.LinkSubjects) opts.Links. ErrNoSubject when there is nothing.
func Subjects(rec *run.Record, opts ProvenanceOptions) (run.Artifacts, Covers, error) {
	if len(opts.Subjects) > 0 {
		return opts.Subjects, CoversOutput, nil
	}
	if steps := rec.AllSteps(); len(steps) > 0 && len(steps[len(steps)-1].Products) > 0 {
		return steps[len(steps)-1].Products, CoversLastStepProducts, nil
	}
	if opts.LinkSubjects && len(opts.Links) > 0 {
		return opts.Links, CoversLinks, nil
	}
	return nil, "", fmt.Errorf("provenance of run %s: %w: the run declared no output and its last step produced nothing", rec.RunID, ErrNoSubject)
}

// Provenance builds the SLSA v1 provenance statement of a whole run; its
// subjects are those of Subjects.
func Provenance(rec *run.Record, opts ProvenanceOptions) (*intoto.Statement, error) {
	subjects, covers, err := Subjects(rec, opts)
	if err != nil {
		return nil, err
	}
	subjectType := ""
	if covers == CoversLinks {
		subjectType = MediaTypeLink
	}
	params := map[string]interface{}{"pipeline": rec.Pipeline}
	if len(rec.Params) > 0 {
		p := map[string]interface{}{}
		for k, v := range rec.Params {
			p[k] = v
		}
		params["params"] = p
	}
	ext, err := structpb.NewStruct(params)
	if err != nil {
		return nil, err
	}
	internal := map[string]interface{}{"source": rec.Source}
	if rec.Namespace != "" {
		internal["namespace"] = rec.Namespace
	}
	var tasks []interface{}
	for _, t := range rec.Tasks {
		tm := map[string]interface{}{"pipelineTask": t.PipelineTask}
		if t.TaskRef != "" {
			tm["taskRef"] = t.TaskRef
		}
		if t.Skipped {
			tm["skipped"] = true
		}
		if len(t.Results) > 0 {
			r := map[string]interface{}{}
			for k, v := range t.Results {
				r[k] = v
			}
			tm["results"] = r
		}
		tasks = append(tasks, tm)
	}
	internal["tasks"] = tasks
	in, err := structpb.NewStruct(internal)
	if err != nil {
		return nil, err
	}
	deps := descriptors(opts.Definitions, "")
	images := map[string]string{}
	for _, s := range rec.AllSteps() {
		if _, ok := images[s.Image]; !ok || s.ImageDigest != "" {
			images[s.Image] = s.ImageDigest
		}
	}
	for _, img := range sortedKeys(images) {
		rd := &intoto.ResourceDescriptor{Uri: "oci://" + img}
		if d := images[img]; d != "" {
			alg, hex, _ := strings.Cut(d, ":")
			rd.Digest = map[string]string{alg: hex}
		} else {
			rd.Annotations, _ = structpb.NewStruct(map[string]interface{}{"stepseal.dev/pulled": false})
		}
		deps = append(deps, rd)
	}
	pred := &provenance.Provenance{
		BuildDefinition: &provenance.BuildDefinition{
			BuildType:            BuildTypePipelineRun,
			ExternalParameters:   ext,
			InternalParameters:   in,
			ResolvedDependencies: deps,
		},
		RunDetails: &provenance.RunDetails{
			Builder: &provenance.Builder{Id: opts.BuilderID},
			Metadata: &provenance.BuildMetadata{
				InvocationId: rec.RunID,
				StartedOn:    timestamppb.New(rec.StartedAt),
				FinishedOn:   timestamppb.New(rec.FinishedAt),
			},
			Byproducts: append(descriptors(opts.Links, MediaTypeLink), opts.Byproducts...),
		},
	}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("provenance of run %s: %w", rec.RunID, err)
	}
	predJSON, err := protojson.Marshal(pred)
	if err != nil {
		return nil, err
	}
	predStruct := &structpb.Struct{}
	if err := protojson.Unmarshal(predJSON, predStruct); err != nil {
		return nil, err
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       descriptors(subjects, subjectType),
		PredicateType: PredicateSLSAProvenanceV1,
		Predicate:     predStruct,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("provenance of run %s: %w", rec.RunID, err)
	}
	return st, nil
}

// SignStatement serialises an in-toto v1 statement and wraps it in a DSSE
// envelope signed by signers.
func SignStatement(ctx context.Context, st *intoto.Statement, signers ...signing.Signer) (*dsse.Envelope, error) {
	payload, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	// protojson output is not stable across versions in whitespace; compact it.
	var compact json.RawMessage = payload
	b, err := json.Marshal(compact)
	if err != nil {
		return nil, err
	}
	return signing.SignEnvelope(ctx, signing.PayloadTypeInToto, b, signers...)
}

func descriptors(a run.Artifacts, mediaType string) []*intoto.ResourceDescriptor {
	var out []*intoto.ResourceDescriptor
	for _, name := range a.Names() {
		d := map[string]string{}
		for alg, v := range a[name] {
			d[alg] = v
		}
		out = append(out, &intoto.ResourceDescriptor{Name: name, Digest: d, MediaType: mediaType})
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package controllertest

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// PipelineRun returns a finished PipelineRun with a child TaskRun per task
// (finished, not yet signed), each with IMAGE_URL/IMAGE_DIGEST results.
func PipelineRun(t testing.TB, tasks ...string) (*v1.PipelineRun, []*v1.TaskRun) {
	t.Helper()
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: "team", UID: "7c0d6a5e-0000-4000-8000-000000000001"},
		Spec:       v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{}},
	}
	var trs []*v1.TaskRun
	for i, task := range tasks {
		pr.Spec.PipelineSpec.Tasks = append(pr.Spec.PipelineSpec.Tasks, v1.PipelineTask{Name: task})
		tr := kubetest.ChildTaskRun(pr, task, &v1.TaskSpec{Steps: []v1.Step{{Name: "a", Image: "alpine:3"}, {Name: "b", Image: "golang:1.26"}}})
		tr.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1))
		st, err := kubetest.FinishedStatus(tr, kubetest.FinishOptions{Results: kubetest.ImageResults("registry.example.com/"+task, i)})
		if err != nil {
			t.Fatal(err)
		}
		tr.Status = *st
		trs = append(trs, tr)
	}
	st, err := kubetest.FinishedPipelineStatus(pr, kubetest.PipelineFinishOptions{TaskRuns: trs})
	if err != nil {
		t.Fatal(err)
	}
	pr.Status = *st
	return pr, trs
}

// RunProvenance returns the verified PipelineRun provenance in s, which must
// hold exactly one.
func RunProvenance(t testing.TB, s store.Store, pub crypto.PublicKey, pr *v1.PipelineRun) *provenance.Provenance {
	t.Helper()
	ctx := context.Background()
	es, err := s.List(ctx, store.Filter{Kind: store.KindProvenance, RunID: string(pr.UID)})
	if err != nil {
		t.Fatal(err)
	}
	var mine []store.Entry
	for _, e := range es {
		if strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
			mine = append(mine, e)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d PipelineRun provenance entries, want 1", len(mine))
	}
	var env dsse.Envelope
	if err := json.Unmarshal(mine[0].Data, &env); err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.VerifyEnvelope(ctx, &env, 1, v); err != nil {
		t.Fatalf("PipelineRun provenance: %v", err)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	st := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, st); err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != attest.PredicateSLSAProvenanceV1 {
		t.Errorf("predicateType %s", st.PredicateType)
	}
	b, _ := protojson.Marshal(st.Predicate)
	p := &provenance.Provenance{}
	if err := protojson.Unmarshal(b, p); err != nil {
		t.Fatal(err)
	}
	if p.BuildDefinition.BuildType != attest.BuildTypePipelineRun || p.RunDetails.Metadata.InvocationId != string(pr.UID) {
		t.Errorf("buildType %s invocationId %s", p.BuildDefinition.BuildType, p.RunDetails.Metadata.InvocationId)
	}
	return p
}

// CheckNamesEveryChild asserts that p's byproducts name every link and every
// TaskRun provenance stored for the run, by the sha256 of the stored bytes;
// children's provenances with media type childMediaType.
func CheckNamesEveryChild(t testing.TB, s store.Store, p *provenance.Provenance, pr *v1.PipelineRun, trs []*v1.TaskRun, childMediaType string) {
	t.Helper()
	byName := map[string]*intoto.ResourceDescriptor{}
	for _, d := range p.RunDetails.Byproducts {
		byName[d.Name] = d
	}
	es, err := s.List(context.Background(), store.Filter{RunID: string(pr.UID)})
	if err != nil {
		t.Fatal(err)
	}
	links, provs := 0, 0
	for _, e := range es {
		if strings.HasSuffix(e.Name, ".pipelinerun.provenance") {
			continue
		}
		d, ok := byName[e.Name]
		if !ok {
			t.Errorf("stored %s %s is not among the byproducts", e.Kind, e.Name)
			continue
		}
		if "sha256:"+d.Digest["sha256"] != store.Digest(e.Data) {
			t.Errorf("%s: byproduct digest %v, stored bytes %s", e.Name, d.Digest, store.Digest(e.Data))
		}
		switch e.Kind {
		case store.KindLink:
			links++
			if d.MediaType != attest.MediaTypeLink {
				t.Errorf("%s: mediaType %s", e.Name, d.MediaType)
			}
		case store.KindProvenance:
			provs++
			if d.MediaType != childMediaType {
				t.Errorf("%s: mediaType %s", e.Name, d.MediaType)
			}
		}
	}
	if links != 2*len(trs) || provs != len(trs) {
		t.Errorf("byproducts name %d links and %d TaskRun provenances, want %d and %d", links, provs, 2*len(trs), len(trs))
	}
	if len(p.RunDetails.Byproducts) != links+provs {
		t.Errorf("%d byproducts, want %d", len(p.RunDetails.Byproducts), links+provs)
	}
}

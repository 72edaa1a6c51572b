package attest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

func record() *run.Record {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return &run.Record{
		Pipeline: "go-build", RunID: "run-1", Source: run.SourceLocal,
		Params:    map[string]string{"version": "1.0.0"},
		StartedAt: t0, FinishedAt: t0.Add(time.Minute),
		Tasks: []run.Task{{PipelineTask: "build", TaskRef: "go-build", Results: map[string]string{"binary": "hello"}, Steps: []run.Step{{
			Name: "build.compile", Image: "golang:1.26", Script: "#!/bin/sh\ngo build\n", ScriptDigest: "abc",
			Env:       map[string]string{"CGO_ENABLED": "0"},
			Materials: run.Artifacts{"source/main.go": {"sha256": strings.Repeat("a", 64)}},
			Products:  run.Artifacts{"dist/hello": {"sha256": strings.Repeat("b", 64)}},
			ExitCode:  0, StartedAt: t0, FinishedAt: t0.Add(time.Second),
			Stdout: run.DigestSet{"sha256": strings.Repeat("c", 64)},
		}}}},
	}
}

func TestLinkIsValidInToto(t *testing.T) {
	rec := record()
	l := attest.Link(rec, rec.Tasks[0].Steps[0])
	if l.Name != "build.compile" || l.Environment[attest.EnvRunID] != "run-1" {
		t.Fatalf("link name/run: %+v", l)
	}
	if got := strings.Join(l.Command, " "); got != "/bin/sh -c #!/bin/sh\ngo build\n" {
		t.Fatalf("command = %q", got)
	}
	if _, ok := l.Environment[attest.EnvImageNote]; !ok {
		t.Fatal("a local step without image digest must say the image was not pulled")
	}
	cluster := *rec
	cluster.Source = "stepseal/controller"
	if _, ok := attest.Link(&cluster, rec.Tasks[0].Steps[0]).Environment[attest.EnvImageNote]; ok {
		t.Fatal("a cluster step without imageID must not claim it ran as a host process")
	}
	k, _ := signing.Generate(signing.ED25519)
	s, _ := signing.NewSigner(k)
	mb, err := attest.SignLink(context.Background(), l, s)
	if err != nil {
		t.Fatal(err)
	}
	// Round trip through in-toto-golang's own loader and validator.
	path := t.TempDir() + "/x.link"
	if err := mb.Dump(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := in_toto.LoadMetadata(path)
	if err != nil {
		t.Fatalf("in-toto-golang cannot load our link: %v", err)
	}
	ik, _ := signing.InTotoKey(k.Public())
	if err := loaded.VerifySignature(ik); err != nil {
		t.Fatalf("in-toto-golang rejects our link signature: %v", err)
	}
}

func TestProvenance(t *testing.T) {
	rec := record()
	st, err := attest.Provenance(rec, attest.ProvenanceOptions{
		BuilderID: "https://stepseal.dev/localrun",
		Links:     run.Artifacts{"build.compile.12345678.link": {"sha256": strings.Repeat("d", 64)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Subject) != 1 || st.Subject[0].Name != "dist/hello" {
		t.Fatalf("subjects default to the last step's products: %v", st.Subject)
	}
	k, _ := signing.Generate(signing.ECDSA)
	s, _ := signing.NewSigner(k)
	v, _ := signing.NewVerifier(k.Public())
	env, err := attest.SignStatement(context.Background(), st, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.VerifyEnvelope(context.Background(), env, 1, v); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(env.Payload)
	var doc struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Predicate     struct {
			BuildDefinition struct {
				BuildType string `json:"buildType"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Metadata struct {
					InvocationID string `json:"invocationId"`
				} `json:"metadata"`
				Byproducts []struct {
					Name string `json:"name"`
				} `json:"byproducts"`
			} `json:"runDetails"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Type != "https://in-toto.io/Statement/v1" || doc.PredicateType != attest.PredicateSLSAProvenanceV1 ||
		doc.Predicate.BuildDefinition.BuildType != attest.BuildTypePipelineRun || doc.Predicate.RunDetails.Metadata.InvocationID != "run-1" ||
		len(doc.Predicate.RunDetails.Byproducts) != 1 {
		t.Fatalf("statement JSON: %s", raw)
	}
	empty := &run.Record{RunID: "r"}
	if _, err := attest.Provenance(empty, attest.ProvenanceOptions{BuilderID: "x"}); err == nil {
		t.Fatal("provenance without subject must fail")
	}
}

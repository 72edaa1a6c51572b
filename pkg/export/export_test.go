package export_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	slsa1 "github.com/in-toto/attestation/go/predicates/provenance/v1"
	attv1 "github.com/in-toto/attestation/go/v1"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stepseal/stepseal/pkg/export"
	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
	"github.com/stepseal/stepseal/pkg/tlog"
)

const provenanceJSON = `{"_type":"https://in-toto.io/Statement/v1",
 "subject":[{"name":"registry.example/app","digest":{"sha256":"8cd26bbdf3c4b167c6a982c569be34347d8ff1e95a091a9beb62611c7f013e8d"}}],
 "predicateType":"https://slsa.dev/provenance/v1",
 "predicate":{"buildDefinition":{"buildType":"https://stepseal.dev/buildtypes/tekton-taskrun/v1","externalParameters":{"task":"build"}},
  "runDetails":{"builder":{"id":"https://stepseal.dev/controller"},"metadata":{"invocationId":"run-1"}}}}`

// docs is a run's output directory as `stepseal run` and `stepseal rekor
// publish --out` leave it: a signed provenance, a signed link, a Sigstore
// bundle of the provenance, and files that are none of these.
func docs(t *testing.T) (dir string, env *dsse.Envelope) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	s := signingtest.Signer(t)
	env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, []byte(provenanceJSON), s)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, v any) {
		b, ok := v.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("provenance.json", env)
	mb := &in_toto.Metablock{Signed: in_toto.Link{Type: "link", Name: "build.compile", Materials: map[string]in_toto.HashObj{}, Products: map[string]in_toto.HashObj{}, ByProducts: map[string]any{}, Environment: map[string]any{}}}
	if err := signing.SignMetablock(ctx, mb, s); err != nil {
		t.Fatal(err)
	}
	write("build.compile.12345678.link", mb)
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType:            "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "x"}}},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: []byte(provenanceJSON), PayloadType: signing.PayloadTypeInToto, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	write("provenance.sigstore.json", b)
	write("notes.txt", []byte("not a document\n"))
	other, err := signing.SignEnvelope(ctx, "text/plain", []byte("hello"), s)
	if err != nil {
		t.Fatal(err)
	}
	write("other.json", other)
	return dir, env
}

// TestExportForGUAC: a run's directory exported: the provenance envelope
// and its bundle are written, one file each, and pass the checks GUAC's
// guessers make (DSSE: payload, payload type, signatures; bundle:
// sigstore-go's own parser), and the provenance parses strictly as an
// in-toto v1 statement with a SLSA v1 predicate (in-toto's attestation Go
// types). The link, a text file and a non-in-toto envelope are skipped
// with the reason; a second export into the same directory is refused.
func TestExportForGUAC(t *testing.T) {
	dir, env := docs(t)
	ds, err := export.FromDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "guac")
	res, err := export.Write(out, ds)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, f := range res.Files {
		kinds[f.Path] = f.Kind
		if f.PredicateType != "https://slsa.dev/provenance/v1" {
			t.Errorf("%s: predicate type %q", f.Path, f.PredicateType)
		}
	}
	if len(res.Files) != 2 || kinds["provenance.dsse.json"] != export.KindDSSE || kinds["provenance.sigstore.json"] != export.KindBundle {
		t.Fatalf("files %+v", res.Files)
	}
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.Source] = s.Reason
	}
	if len(skipped) != 3 || !strings.Contains(skipped["build.compile.12345678.link"], "Metablock") || skipped["notes.txt"] == "" || !strings.Contains(skipped["other.json"], "text/plain") {
		t.Fatalf("skipped %+v", res.Skipped)
	}
	des, err := os.ReadDir(out)
	if err != nil || len(des) != 2 {
		t.Fatalf("%s holds %d files (%v), want 2", out, len(des), err)
	}

	// GUAC's DSSE guesser, then its ITE6 guesser and a strict parse of the
	// statement and its SLSA v1 predicate.
	raw, err := os.ReadFile(filepath.Join(out, "provenance.dsse.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got dsse.Envelope
	if err := json.Unmarshal(raw, &got); err != nil || got.Payload == "" || got.PayloadType == "" || len(got.Signatures) == 0 {
		t.Fatalf("not a DSSE envelope GUAC recognises: %v", err)
	}
	if got.Payload != env.Payload || got.Signatures[0].Sig != env.Signatures[0].Sig {
		t.Fatal("the exported envelope is not the signed one")
	}
	payload, _ := base64.StdEncoding.DecodeString(got.Payload)
	checkProvenance(t, payload)

	// GUAC's bundle guesser is sigstore-go's parser.
	raw, err = os.ReadFile(filepath.Join(out, "provenance.sigstore.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b sgbundle.Bundle
	b.Bundle = new(protobundle.Bundle)
	if err := b.UnmarshalJSON(raw); err != nil {
		t.Fatalf("sigstore-go refuses the exported bundle: %v", err)
	}
	checkProvenance(t, b.GetDsseEnvelope().GetPayload())

	if _, err := export.Write(out, ds); !errors.Is(err, export.ErrDestination) || !errors.Is(err, reject.ErrPolicy) {
		t.Fatalf("second export into %s: %v", out, err)
	}
}

func checkProvenance(t *testing.T, payload []byte) {
	t.Helper()
	var st attv1.Statement
	if err := protojson.Unmarshal(payload, &st); err != nil {
		t.Fatalf("not an in-toto v1 statement: %v", err)
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("in-toto statement: %v", err)
	}
	pj, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		t.Fatal(err)
	}
	var p slsa1.Provenance
	if err := protojson.Unmarshal(pj, &p); err != nil {
		t.Fatalf("not a SLSA v1 provenance: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("SLSA v1 provenance: %v", err)
	}
	if !strings.HasPrefix(st.GetPredicateType(), "https://slsa.dev/provenance/") {
		t.Fatalf("predicate type %q: GUAC would not route it to its SLSA parser", st.GetPredicateType())
	}
}

// FuzzClassify: any bytes are classified or refused with an error of
// pkg/reject's vocabulary, never a panic.
func FuzzClassify(f *testing.F) {
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{"signed":{"_type":"link"},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, pt, err := export.Classify(data)
		if err != nil {
			if reject.Of(err) == nil {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if (kind != export.KindDSSE && kind != export.KindBundle) || pt == "" {
			t.Fatalf("classified as %q %q", kind, pt)
		}
	})
}

// TestExportFromServedLog: a run's entries read from a served log (every
// answer verified) are exported like a directory's.
func TestExportFromServedLog(t *testing.T) {
	ctx := context.Background()
	skey, vkey, err := tlog.GenerateKey("log.stepseal.test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlog.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	s := signingtest.Signer(t)
	srv, err := logserver.Open(ctx, t.TempDir(), key, logserver.Options{Keys: logserver.Keys{signingtest.Verifier(t, s)}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() { hs.Close(); srv.Close(ctx) }()
	c, err := logserver.NewClient(hs.URL, key.Verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{"run-1", "run-2"} {
		env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, []byte(strings.Replace(provenanceJSON, "run-1", run, 1)), s)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(env)
		if _, err := c.Add(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := export.FromServedLog(ctx, hs.URL, vkey, "run-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := export.Write(filepath.Join(t.TempDir(), "guac"), ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 1 || res.Files[0].Kind != export.KindDSSE {
		t.Fatalf("exported %+v, skipped %+v", res.Files, res.Skipped)
	}
	raw, err := os.ReadFile(filepath.Join(res.Dir, res.Files[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	var got dsse.Envelope
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(got.Payload)
	if !strings.Contains(string(payload), `"invocationId":"run-1"`) {
		t.Fatalf("exported another run: %s", payload)
	}
	checkProvenance(t, payload)
}

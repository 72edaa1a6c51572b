package oci

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// fileStatement is a provenance about a file as `stepseal run` writes it:
// subject "<workspace>/<path>" with the file's sha256.
func fileStatement(fileDigest v1.Hash, builder string) []byte {
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject":       []any{map[string]any{"name": "dist/app.tar.gz", "digest": map[string]string{"sha256": fileDigest.Hex}}},
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://stepseal.dev/test/v1", "externalParameters": map[string]any{"n": json.Number("12345678901234567890")}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": builder}},
		},
	}
	b, _ := json.Marshal(st)
	return b
}

func signStatement(t testing.TB, payload []byte, key crypto.Signer) *dsse.Envelope {
	t.Helper()
	s, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, payload, s)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestArtifactDigests(t *testing.T) {
	dir := t.TempDir()
	content := writeRandomFile(t, filepath.Join(dir, "app.bin"), 4096, 1)
	img, err := FromFile(filepath.Join(dir, "app.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := ArtifactDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := img.Digest()
	if len(ds) != 2 || ds[0] != md || ds[1].String() != sha(content) {
		t.Fatalf("file artifact digests %v, want manifest %s and file %s", ds, md, sha(content))
	}
	ri, _ := random.Image(256, 2)
	ds, err = ArtifactDigests(ri)
	rd, _ := ri.Digest()
	if err != nil || len(ds) != 1 || ds[0] != rd {
		t.Fatalf("image digests %v %v, want only the manifest %s", ds, err, rd)
	}
}

// TestVerifyStatementRefusesForgedAndUnrelated mounts the attack on publish
// --attest: a provenance whose builder was changed and whose signature is
// "AAAA", one signed by another key, and a validly signed one about another
// file. Each is refused with its own error naming the file and key.
func TestVerifyStatementRefusesForgedAndUnrelated(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeRandomFile(t, filepath.Join(dir, "app.bin"), 4096, 2)
	img, _ := FromFile(filepath.Join(dir, "app.bin"))
	digests, _ := ArtifactDigests(img)
	fileDigest := digests[1]
	publisher, other := genKey(t, signing.ECDSA), genKey(t, signing.ED25519)
	keys := []StatementKey{{Name: "publisher.pub", Public: publisher.Public()}}
	pubID, _ := signing.KeyID(publisher.Public())

	good := signStatement(t, fileStatement(fileDigest, "https://stepseal.dev/builder"), publisher)
	vs, err := VerifyStatement(ctx, "provenance.json", good, keys, digests)
	if err != nil {
		t.Fatal(err)
	}
	if vs.KeyID != pubID || vs.KeyName != "publisher.pub" || vs.Subject != fileDigest || vs.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Fatalf("verified %+v", vs)
	}

	forged := &dsse.Envelope{PayloadType: good.PayloadType, Signatures: []dsse.Signature{{KeyID: good.Signatures[0].KeyID, Sig: "AAAA"}},
		Payload: base64.StdEncoding.EncodeToString(fileStatement(fileDigest, "https://evil.example/builder"))}
	// The forged payload with the genuine signature of the original.
	spliced := &dsse.Envelope{PayloadType: good.PayloadType, Signatures: good.Signatures, Payload: forged.Payload}
	unrelated := signStatement(t, fileStatement(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, "https://stepseal.dev/builder"), publisher)
	notInToto := signStatement(t, []byte(`{"_type":"https://example.com/Other","predicateType":"x","subject":[{"digest":{"sha256":"`+fileDigest.Hex+`"}}]}`), publisher)
	for _, c := range []struct {
		name string
		env  *dsse.Envelope
		keys []StatementKey
		want error
		msg  string
	}{
		{"forged builder, signature AAAA", forged, keys, ErrSignature, "attestation forged.json: none of its 1 signature(s) verifies with publisher.pub (" + pubID[:8] + ")"},
		{"forged builder, original signature", spliced, keys, ErrSignature, "verifies with publisher.pub"},
		{"signed by another key", signStatement(t, fileStatement(fileDigest, "https://stepseal.dev/builder"), other), keys, ErrSignature, "verifies with publisher.pub"},
		{"unsigned", &dsse.Envelope{PayloadType: good.PayloadType, Payload: good.Payload}, keys, ErrSignature, "is not signed"},
		{"no key", good, nil, ErrSignature, "no key to verify it with"},
		{"about another file", unrelated, keys, ErrDigestMismatch, "(signed by publisher.pub) is about sha256:" + strings.Repeat("ab", 32) + ", not the artifact (" + digests[0].String() + " or " + fileDigest.String() + ")"},
		{"not an in-toto statement", notInToto, keys, ErrArtifact, `_type "https://example.com/Other"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := strings.SplitN(c.name, ",", 2)[0]
			if c.name == "forged builder, signature AAAA" {
				src = "forged.json"
			}
			_, err := VerifyStatement(ctx, src, c.env, c.keys, digests)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), src) {
				t.Fatalf("err = %v, want %v containing %q", err, c.want, c.msg)
			}
		})
	}
	// Any of several keys will do; an RSA key in cosign's scheme too.
	rsaKey := genKey(t, signing.RSA)
	cs, _ := CosignSigner(rsaKey)
	cenv, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, fileStatement(fileDigest, "b"), cs)
	if err != nil {
		t.Fatal(err)
	}
	vs, err = VerifyStatement(ctx, "rsa.json", cenv, append(keys, StatementKey{Name: "rsa.pub", Public: rsaKey.Public()}), digests)
	if err != nil || vs.KeyName != "rsa.pub" {
		t.Fatalf("cosign-scheme RSA: %+v %v", vs, err)
	}
}

// TestReissueKeepsTheOriginalVerifiable: the re-issued statement names the
// encrypted image, is signed by the publisher, and carries the original
// envelope, which still verifies with the builder's key and names the file.
func TestReissueKeepsTheOriginalVerifiable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeRandomFile(t, filepath.Join(dir, "app.bin"), 4096, 3)
	img, _ := FromFile(filepath.Join(dir, "app.bin"))
	digests, _ := ArtifactDigests(img)
	builder, publisher := genKey(t, signing.ED25519), genKey(t, signing.ECDSA)
	orig := signStatement(t, fileStatement(digests[1], "https://stepseal.dev/builder"), builder)
	vs, err := VerifyStatement(ctx, "provenance.json", orig, []StatementKey{{Name: "builder.pub", Public: builder.Public()}}, digests)
	if err != nil {
		t.Fatal(err)
	}
	target, err := name.NewDigest("127.0.0.1:5000/demo/app@sha256:"+strings.Repeat("cd", 32), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	env, err := Reissue(ctx, vs, target, publisher)
	if err != nil {
		t.Fatal(err)
	}
	// The publisher's statement about the image.
	pv, _ := signing.NewVerifier(publisher.Public())
	if _, err := signing.VerifyEnvelope(ctx, env, 1, pv); err != nil {
		t.Fatal(err)
	}
	st, err := statementOf(env)
	if err != nil || !st.names(target) || len(st.Subject) != 2 || st.Subject[1].Digest["sha256"] != digests[1].Hex {
		t.Fatalf("re-issued statement %+v %v", st, err)
	}
	pl, _ := env.DecodeB64Payload()
	if !strings.Contains(string(pl), `"n":12345678901234567890`) {
		t.Fatalf("predicate numbers changed:\n%s", pl)
	}
	// The original inside, verifiable with the builder key alone.
	got, err := OriginalEnvelope(pl, target)
	if err != nil {
		t.Fatal(err)
	}
	if got.Payload != orig.Payload {
		t.Fatal("embedded envelope differs from the original")
	}
	if _, err := VerifyStatement(ctx, "embedded", got, []StatementKey{{Name: "builder.pub", Public: builder.Public()}}, digests); err != nil {
		t.Fatalf("embedded original: %v", err)
	}
	if _, err := VerifyStatement(ctx, "embedded", got, []StatementKey{{Name: "publisher.pub", Public: publisher.Public()}}, digests); !errors.Is(err, ErrSignature) {
		t.Fatalf("embedded original verified with the publisher key: %v", err)
	}
	// Moved to a rotated digest, the original travels along.
	rotated, _ := name.NewDigest("127.0.0.1:5000/demo/app@sha256:"+strings.Repeat("ef", 32), name.Insecure)
	moved, err := Move(ctx, pl, target, rotated, publisher)
	if err != nil {
		t.Fatal(err)
	}
	mpl, _ := moved.DecodeB64Payload()
	mst, _ := statementOf(moved)
	if !mst.names(rotated) || mst.names(target) {
		t.Fatalf("moved statement subjects %s", mst.subjectDigests())
	}
	if got, err := OriginalEnvelope(mpl, rotated); err != nil || got.Payload != orig.Payload {
		t.Fatalf("original after Move: %v", err)
	}
	if _, err := OriginalEnvelope(statementFor(rotated, "x"), rotated); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("statement without an original: %v", err)
	}
}

// TestPlainHTTPRegistryWithoutInsecure: a loopback registry speaking plain
// HTTP, used without the insecure option, is one error naming it once.
func TestPlainHTTPRegistryWithoutInsecure(t *testing.T) {
	host := distribution(t).host
	ref, err := ParseReference(host + "/demo/x:v1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(context.Background(), ref, WithProgress(nil))
	var pe *PlainHTTPError
	if !errors.As(err, &pe) || !pe.Loopback || pe.Registry != host || !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrPlainHTTP) || !errors.Is(err, reject.ErrUnableToCheck) {
		t.Fatalf("err = %#v", err)
	}
	if n := strings.Count(err.Error(), "server gave HTTP response to HTTPS client"); n != 1 {
		t.Fatalf("the cause appears %d times: %v", n, err)
	}
}

// FuzzOriginalEnvelope: what a registry serves as a statement never makes
// OriginalEnvelope panic.
func FuzzOriginalEnvelope(f *testing.F) {
	d, _ := name.NewDigest("127.0.0.1:5000/demo/app@sha256:" + strings.Repeat("cd", 32))
	f.Add([]byte(`{"subject":[{"digest":{"sha256":"` + strings.Repeat("cd", 32) + `"},"annotations":{"stepseal.dev/reissued-from":{"payloadType":"x","payload":"e30=","signatures":[]}}}]}`))
	f.Add([]byte(`{"subject":[{"digest":{"sha256":"` + strings.Repeat("cd", 32) + `"},"annotations":{"stepseal.dev/reissued-from":7}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := OriginalEnvelope(data, d)
		if err == nil && env == nil {
			t.Fatal("nil envelope without error")
		}
	})
}

// FuzzVerifyStatement: any payload signed by the key is either refused or
// accepted with a subject that is one of the artifact's digests.
func FuzzVerifyStatement(f *testing.F) {
	key, err := signing.Generate(signing.ED25519)
	if err != nil {
		f.Fatal(err)
	}
	s, _ := signing.NewSigner(key)
	digests := []v1.Hash{{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}
	ref, err := name.NewDigest("h/r@sha256:" + digests[0].Hex)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(fileStatement(digests[0], "b")))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":{"sha256":1}}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		env, err := signing.SignEnvelope(context.Background(), signing.PayloadTypeInToto, payload, s)
		if err != nil {
			return
		}
		vs, err := VerifyStatement(context.Background(), "fuzz", env, []StatementKey{{Name: "k", Public: key.Public()}}, digests)
		if err != nil {
			return
		}
		if vs.Subject != digests[0] {
			t.Fatalf("accepted with subject %v", vs.Subject)
		}
		var st statement
		if json.Unmarshal(payload, &st) != nil || !st.names(ref) {
			t.Fatalf("accepted a statement that does not name the artifact: %s", payload)
		}
	})
}

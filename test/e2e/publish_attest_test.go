package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestPublishAttestRefusesForgedAndUnrelated: publish --attest re-signed
// whatever it was given. A provenance whose builder was changed to
// https://evil.example/builder and whose signature is "AAAA", and a validly
// signed provenance about another file, are refused before anything is
// pushed; the run's own provenance, published with the file it is about,
// is attached and cosign verify-attestation accepts it, with the original
// envelope verifiable inside.
func TestPublishAttestRefusesForgedAndUnrelated(t *testing.T) {
	e := newPubEnv(t)
	runOut := e.path("run")
	if r := ss(t, "run", "examples/go-build", "--out", runOut, "-q"); r.code != 0 {
		t.Fatal(r)
	}
	prov := filepath.Join(runOut, "provenance.json")
	archive := filepath.Join(runOut, "work", "workspaces", "dist", "app.tar.gz")
	publisherKey, publisherPub := filepath.Join(runOut, "keys", "publisher.key"), filepath.Join(runOut, "keys", "publisher.pub")
	unrelated := e.path("unrelated.bin")
	randomFile(t, unrelated, 64<<10)

	// The forged provenance: builder changed, signature "AAAA".
	env := readJSON(t, prov)
	payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	forgedPayload := strings.Replace(string(payload), `"builder":{"id":"`, `"builder":{"id":"https://evil.example/builder","was":"`, 1)
	if forgedPayload == string(payload) {
		t.Fatalf("no builder id in the provenance:\n%s", payload)
	}
	env["payload"] = base64.StdEncoding.EncodeToString([]byte(forgedPayload))
	sigs := env["signatures"].([]any)
	sigs[0].(map[string]any)["sig"] = "AAAA"
	env["signatures"] = sigs[:1]
	forged := e.path("forged.json")
	writeJSON(t, forged, env)

	signerID := keyID(t, e.signerPub)
	publisherID := keyID(t, publisherPub)
	cases := []struct {
		name, file, repo string
		args             []string
		want             []string
	}{
		{"forged builder and signature AAAA, attached to an unrelated file", unrelated, "forged", []string{"--attest", forged},
			[]string{"signature verification failed: attestation " + forged + ": none of its 1 signature(s) verifies with the public key of --key " + e.signer + " (" + signerID[:8] + ")"}},
		{"forged builder and signature AAAA, with the run's key and file", archive, "forged-run", []string{"--attest", forged, "--attest-key", publisherPub},
			[]string{"signature verification failed: attestation " + forged + ": none of its 1 signature(s) verifies with " + publisherPub + " (" + publisherID[:8] + ")"}},
		{"genuine provenance, not signed by the publisher", archive, "not-publisher", []string{"--attest", prov},
			[]string{"signature verification failed: attestation " + prov + ": none of its 1 signature(s) verifies with the public key of --key " + e.signer}},
		{"genuine provenance about another file", unrelated, "unrelated", []string{"--attest", prov, "--attest-key", publisherPub},
			[]string{"signed payload is for another digest: attestation " + prov + " (signed by " + publisherPub + ") is about sha256:", "not the artifact (sha256:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := e.host + "/demo/" + c.repo + ":v1"
			args := append([]string{"publish", c.file, ref, "--key", e.signer, "--platform-policy", e.policy, "--insecure"}, c.args...)
			r := ss(t, args...)
			wantError(t, r, c.want...)
			if strings.Contains(r.stdout, "re-issued") {
				t.Fatalf("refused, but said it re-issued: %s", r)
			}
			if tags := e.tags(t, e.host+"/demo/"+c.repo); len(tags) != 0 {
				t.Fatalf("refused attestation, but the repository has tags %v", tags)
			}
		})
	}

	t.Run("the run's provenance with the run's output", func(t *testing.T) {
		r := ss(t, "publish", archive, e.host+"/demo/app:v1", "--key", publisherKey, "--platform-policy", e.policy, "--insecure", "-o", "json", "--attest", prov)
		if r.code != 0 {
			t.Fatal(r)
		}
		var rep struct {
			Digest   string `json:"digest"`
			Reissued int    `json:"reissued"`
			Attested []struct {
				File, SignedBy, KeyID, Subject string
				Reissued                       bool
			} `json:"attested"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		fileDigest := "sha256:" + sha256File(t, archive)
		if rep.Reissued != 1 || len(rep.Attested) != 1 || rep.Attested[0].File != prov || rep.Attested[0].KeyID != publisherID || rep.Attested[0].Subject != fileDigest || !rep.Attested[0].Reissued {
			t.Fatalf("report %+v\n%s", rep, r)
		}
		if v := e.cosignVerifyAttestation(t, publisherPub, rep.Digest); v.code != 0 {
			t.Fatalf("cosign verify-attestation: %s", v)
		}
		// The statement cosign verified carries the run's envelope, which
		// verifies with the publisher key on its own and names the archive.
		d, err := name.NewDigest(rep.Digest, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := signing.LoadVerifier(publisherPub)
		if err != nil {
			t.Fatal(err)
		}
		atts, err := oci.VerifyAttestations(context.Background(), d, pub.Public(), nil, oci.WithInsecure(), oci.WithProgress(nil))
		if err != nil || len(atts) != 1 {
			t.Fatalf("attestations: %v %v", atts, err)
		}
		orig, err := oci.OriginalEnvelope(atts[0].Statement, d)
		if err != nil {
			t.Fatal(err)
		}
		if orig.Payload != readJSON(t, prov)["payload"] {
			t.Fatal("the envelope inside is not the run's provenance")
		}
		if _, err := signing.VerifyEnvelope(context.Background(), orig, 1, pub); err != nil {
			t.Fatalf("original envelope: %v", err)
		}
		if !strings.Contains(string(mustDecode(t, orig.Payload)), strings.TrimPrefix(fileDigest, "sha256:")) {
			t.Fatal("original statement does not name the archive")
		}
	})
}

func keyID(t *testing.T, pubPath string) string {
	t.Helper()
	v, err := signing.LoadVerifier(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := v.KeyID()
	return id
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	r := run(t, nil, "sha256sum", p)
	if r.code != 0 {
		t.Fatal(r)
	}
	return strings.Fields(r.stdout)[0]
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package signing

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/reject"
)

func TestReadEnvelope(t *testing.T) {
	k, err := Generate(ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	env, err := SignEnvelope(context.Background(), PayloadTypeInToto, []byte(`{"_type":"x"}`), s)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(env)
	dir := t.TempDir()
	p := filepath.Join(dir, "env.json")
	if err := os.WriteFile(p, good, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvelope(p)
	if err != nil || got.Payload != env.Payload || len(got.Signatures) != 1 {
		t.Fatalf("ReadEnvelope = %+v, %v", got, err)
	}
	for _, c := range []struct{ name, data, want string }{
		{"not JSON", "payload", "not a signed DSSE envelope"},
		{"unknown field", strings.Replace(string(good), `"payload"`, `"extra":1,"payload"`, 1), "unknown field"},
		{"two values", string(good) + string(good), "data after the envelope"},
		{"no payloadType", `{"payload":"e30=","signatures":[{"sig":"AA=="}]}`, "no payloadType"},
		{"no payload", `{"payloadType":"t","signatures":[{"sig":"AA=="}]}`, "no payload"},
		{"unsigned", `{"payloadType":"t","payload":"e30=","signatures":[]}`, "no signature"},
		{"empty signature", `{"payloadType":"t","payload":"e30=","signatures":[{"keyid":"k","sig":""}]}`, "signature 0 is empty"},
		{"payload not base64", `{"payloadType":"t","payload":"%%%","signatures":[{"sig":"AA=="}]}`, "payload"},
		{"too large", `{"payloadType":"t","payload":"` + strings.Repeat("A", MaxEnvelopeSize) + `"}`, "larger than"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(p, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadEnvelope(p)
		if !errors.Is(err, ErrEnvelope) || !errors.Is(err, reject.ErrMalformed) || !strings.HasPrefix(err.Error(), p+": not a signed DSSE envelope") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrEnvelope naming %s and %q", c.name, err, p, c.want)
		}
	}
	if _, err := ReadEnvelope(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParseEnvelope: ParseEnvelope never panics; what it accepts has a
// payload type, a decodable payload and signatures, and re-encodes to an
// envelope it accepts again.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"k","sig":"AA=="}]}`))
	f.Add([]byte(`{"payloadType":"t","payload":"e30=","signatures":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("error not ErrEnvelope: %v", err)
			}
			return
		}
		if env.PayloadType == "" || len(env.Signatures) == 0 {
			t.Fatalf("accepted %+v", env)
		}
		if _, err := env.DecodeB64Payload(); err != nil {
			t.Fatalf("accepted an undecodable payload: %v", err)
		}
		out, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseEnvelope(out, "fuzz-again"); err != nil {
			t.Fatalf("re-encoded envelope refused: %v\n%s", err, out)
		}
	})
}

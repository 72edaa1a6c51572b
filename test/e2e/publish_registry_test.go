package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestPublishPlainHTTPWithoutInsecure: the test registry speaks plain HTTP
// on loopback; without --insecure, publish, pull and crypt recipients fail
// with the cause once and the hint to pass --insecure.
func TestPublishPlainHTTPWithoutInsecure(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	randomFile(t, file, 4<<10)
	ref := e.host + "/demo/app:v1"
	hint := "(the registry at " + e.host + " speaks plain HTTP; pass --insecure for a loopback registry)"
	for name, args := range map[string][]string{
		"publish":          {"publish", file, ref, "--key", e.signer, "--platform-policy", e.policy},
		"pull":             {"pull", ref, "--out", e.path("out"), "--key", e.signerPub},
		"crypt recipients": {"crypt", "recipients", ref},
	} {
		t.Run(name, func(t *testing.T) {
			r := ss(t, args...)
			wantError(t, r, "registry unreachable: registry "+e.host+": http: server gave HTTP response to HTTPS client "+hint)
			if n := strings.Count(r.stderr, "server gave HTTP response to HTTPS client"); n != 1 {
				t.Fatalf("the cause is printed %d times:\n%s", n, r)
			}
		})
	}
	if tags := e.tags(t, e.host+"/demo/app"); len(tags) != 0 {
		t.Fatalf("tags %v", tags)
	}
}

// TestCryptRecipientsNamesPlatforms: with a policy, crypt recipients says
// which platforms can decrypt, shows a key of no platform as "unknown key",
// and its JSON fields are camelCase.
func TestCryptRecipientsNamesPlatforms(t *testing.T) {
	e := newPubEnv(t)
	file := e.path("app.bin")
	randomFile(t, file, 64<<10)
	ref := e.host + "/demo/app:v1"
	e.publish(t, file, ref)

	r := ss(t, "crypt", "recipients", ref, "--platform-policy", e.policy, "--insecure")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{
		"  layer 0: platform prod-eu (ECDH-ES+A256KW EC-P-256)\n",
		"  layer 0: platform prod-us (RSA-OAEP-256 RSA-2048)\n",
		`platforms of policy "e2e" that can decrypt: prod-eu, prod-us` + "\n",
		`recipients are exactly the platforms policy "e2e" names` + "\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "layer 0: sha256:") {
		t.Errorf("key hashes where platforms were asked for:\n%s", r.stdout)
	}

	// JSON: camelCase fields, platform per recipient.
	r = ss(t, "crypt", "recipients", ref, "--platform-policy", e.policy, "--insecure", "-o", "json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	recips, _ := rep["recipients"].([]any)
	if len(recips) != 2 || fmt.Sprint(rep["platforms"]) != "[prod-eu prod-us]" || rep["matchesPolicy"] != true {
		t.Fatalf("report %s", r.stdout)
	}
	first := recips[0].(map[string]any)
	for _, k := range []string{"layer", "layerDigest", "scheme", "keyID", "algorithm", "shape", "platform"} {
		if _, ok := first[k]; !ok {
			t.Errorf("recipient JSON has no %q: %v", k, first)
		}
	}
	if first["platform"] != "prod-eu" || strings.Contains(r.stdout, `"KeyID"`) || strings.Contains(r.stdout, `"Layer"`) {
		t.Fatalf("recipient JSON %s", r.stdout)
	}

	// A policy that no longer knows prod-us's key: an unknown key, and the
	// recipients no longer match.
	known := e.path("policy-no-us.yaml")
	doc := strings.Replace(string(mustRead(t, e.policy)), "  - name: prod-us\n    publicKey: prod-us.pub\n", "", 1)
	doc = strings.Replace(doc, "platforms: [prod-eu, prod-us]", "platforms: [prod-eu]", 1)
	if err := os.WriteFile(known, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	usFP := recips[1].(map[string]any)["keyID"].(string)
	r = ss(t, "crypt", "recipients", ref, "--platform-policy", known, "--insecure")
	if r.code == 0 || !strings.Contains(r.stdout, "  layer 0: unknown key "+usFP+" (RSA-OAEP-256 RSA-2048)\n") ||
		!strings.Contains(r.stdout, `platforms of policy "e2e" that can decrypt: prod-eu`+"\n") || !strings.Contains(r.stderr, "recipients differ from platform policy") {
		t.Fatalf("with a policy without prod-us: %s", r)
	}
	r = ss(t, "crypt", "recipients", ref, "--platform-policy", known, "--insecure", "-o", "json")
	rep = nil
	json.Unmarshal([]byte(r.stdout), &rep)
	if r.code == 0 || fmt.Sprint(rep["unknownKeys"]) != "["+usFP+"]" || fmt.Sprint(rep["platforms"]) != "[prod-eu]" || rep["matchesPolicy"] != false {
		t.Fatalf("JSON with a policy without prod-us: %s", r)
	}
}

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishPolicyRollbackRefused: policy v2 removed prod-us from the demo
// rule; once a client accepted v2, v1 (which still encrypts to prod-us) is
// refused by publish, pull, crypt recipients and crypt rotate with the
// rollback error, and nothing is pushed. The same version with other
// content (a fork) is refused too, and a corrupted state file is an error
// naming it, not a fresh start.
func TestPublishPolicyRollbackRefused(t *testing.T) {
	e := newPubEnv(t)
	if r := ss(t, "keys", "generate", "--type", "ecdsa", "--out", e.dir, "--name", "owner"); r.code != 0 {
		t.Fatal(r)
	}
	owner := e.path("owner.pub")
	sign := func(plain, out string) string {
		t.Helper()
		p := e.path(out)
		if r := ss(t, "policy", "sign", plain, "--key", e.path("owner.key"), "--out", p); r.code != 0 {
			t.Fatal(r)
		}
		return p
	}
	v1 := sign(e.policy, "v1.json") // demo -> [prod-eu, prod-us]
	v2 := sign(e.writePolicy(t, "policy-v2.yaml", 2, "[prod-eu]"), "v2.json")
	fork := sign(e.writePolicy(t, "policy-v2-fork.yaml", 2, "[prod-eu, other]"), "v2-fork.json")
	state := filepath.Join(e.path("state"), "stepseal", "platform-policies.json") // XDG_STATE_HOME of newPubEnv

	file := e.path("app.bin")
	randomFile(t, file, 64<<10)
	publish := func(tag, pol string, extra ...string) result {
		args := append([]string{"publish", file, e.host + "/demo/app:" + tag, "--key", e.signer, "--platform-policy", pol, "--policy-key", owner, "--insecure", "-o", "json"}, extra...)
		return ss(t, args...)
	}
	if r := publish("v2", v2); r.code != 0 || !strings.Contains(r.stdout, `"platforms": [`+"\n"+`    "prod-eu"`+"\n"+`  ]`) {
		t.Fatalf("publish with v2: %s", r)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file %s: %v %v", state, fi, err)
	}
	before := string(mustRead(t, state))
	tagsBefore := strings.Join(e.tags(t, e.host+"/demo/app"), " ")

	rollback := `platform policy rollback: ` + v1 + `: policy "e2e" version 1 is older than version 2 already accepted (recorded in ` + state + `)`
	r := publish("v1", v1)
	wantError(t, r, rollback)
	if r.stdout != "" {
		t.Fatalf("refused publish printed a report: %s", r)
	}
	if d := e.tagDigest(t, e.host+"/demo/app:v1"); d != "" {
		t.Fatalf("rollback refused, but tag v1 exists (%s)", d)
	}
	if tags := strings.Join(e.tags(t, e.host+"/demo/app"), " "); tags != tagsBefore {
		t.Fatalf("the refused publish pushed: tags %s, before %s", tags, tagsBefore)
	}
	ref := e.host + "/demo/app:v2"
	for name, args := range map[string][]string{
		"pull":              {"pull", ref, "--out", e.path("pulled"), "--key", e.signerPub, "--decryption-key", e.key["prod-eu"]},
		"crypt recipients":  {"crypt", "recipients", ref},
		"crypt rotate":      {"crypt", "rotate", ref, "--key", e.signer, "--decryption-key", e.key["prod-eu"]},
		"publish (--state)": {"publish", file, e.host + "/demo/app:v1", "--key", e.signer, "--state", filepath.Dir(state)},
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, ss(t, append(args, "--platform-policy", v1, "--policy-key", owner, "--insecure")...), rollback)
		})
	}
	if _, err := os.Lstat(e.path("pulled")); err == nil {
		t.Fatal("refused pull wrote --out")
	}
	t.Run("fork", func(t *testing.T) {
		wantError(t, publish("fork", fork), `platform policy rollback: `+fork+`: policy "e2e" version 2 is a fork: its document sha256:`)
		if d := e.tagDigest(t, e.host+"/demo/app:fork"); d != "" {
			t.Fatal("fork refused, but tagged")
		}
	})
	if tags := strings.Join(e.tags(t, e.host+"/demo/app"), " "); tags != tagsBefore {
		t.Fatalf("refused commands pushed: tags %s, before %s", tags, tagsBefore)
	}
	if after := string(mustRead(t, state)); after != before {
		t.Fatalf("refusals changed the state:\n%s\n%s", before, after)
	}
	t.Run("another state directory has not seen v2", func(t *testing.T) {
		if r := publish("v1-elsewhere", v1, "--state", e.path("other-state")); r.code != 0 {
			t.Fatal(r)
		}
	})
	t.Run("corrupted state file", func(t *testing.T) {
		if err := os.WriteFile(state, []byte(before[:len(before)/2]), 0o600); err != nil {
			t.Fatal(err)
		}
		wantError(t, publish("corrupt", v2), "platform policy state: "+state+" is corrupted", "it is not reset")
		if string(mustRead(t, state)) != before[:len(before)/2] {
			t.Fatal("corrupted state file rewritten")
		}
	})
}

package vsa

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/signing/signingtest"
)

// slsaVerifier finds the slsa-verifier CLI (v2.7.1, installed by
// hack/install-test-deps.sh) in PATH or $(go env GOPATH)/bin. Absent, the
// test fails in CI (CI set) and is skipped elsewhere, saying how to get it.
func slsaVerifier(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("slsa-verifier"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0], "bin", "slsa-verifier")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("slsa-verifier not installed: hack/install-test-deps.sh installs it")
	}
	t.Skip("slsa-verifier not installed (run make deps / hack/install-test-deps.sh)")
	return ""
}

// TestSLSAVerifierAcceptsOurVSA: `slsa-verifier verify-vsa` accepts a VSA
// stepseal signs (ECDSA P-256, the in-toto key ID as the DSSE key ID; its
// inputs carry the ExtInputSigners extension field), and
// refuses it for another subject digest, another verifier ID and a FAILED
// one: the spec's consumer procedure as another implementation reads it.
func TestSLSAVerifierAcceptsOurVSA(t *testing.T) {
	bin := slsaVerifier(t)
	dir := t.TempDir()
	key := signingtest.Signer(t)
	pem, err := signing.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "verifier.pub")
	if err := os.WriteFile(pubPath, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	keyID, _ := key.KeyID()
	s := summary()
	s.Time = now // any time: slsa-verifier does not check freshness
	write := func(n string, s Summary) string {
		_, data, err := Sign(context.Background(), s, key)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("vsa.json", s)
	failed := s
	failed.Result = Failed
	bad := write("failed.json", failed)
	run := func(att, digest, verifierID string) (string, error) {
		cmd := exec.Command(bin, "verify-vsa", "--attestation-path", att, "--subject-digest", digest,
			"--verifier-id", verifierID, "--resource-uri", resource, "--verified-level", LevelLayout,
			"--public-key-path", pubPath, "--public-key-id", keyID)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(good, "sha256:"+imageHex, verifier); err != nil {
		t.Fatalf("slsa-verifier refused our VSA: %v\n%s", err, out)
	}
	for name, c := range map[string][3]string{
		"another subject":  {good, "sha256:" + otherHex, verifier},
		"another verifier": {good, "sha256:" + imageHex, "https://evil.example/verifier"},
		"FAILED":           {bad, "sha256:" + imageHex, verifier},
	} {
		if out, err := run(c[0], c[1], c[2]); err == nil {
			t.Errorf("%s: slsa-verifier accepted it:\n%s", name, out)
		}
	}
}

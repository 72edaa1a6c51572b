package oci

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/stepseal/stepseal/pkg/signing"
)

// The interop tests run the cosign (v2.6.5) and crane (v0.22.1) CLIs that
// hack/install-test-deps.sh installs against the real Distribution registry.

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed: run make deps (hack/install-test-deps.sh)", name)
	}
	return p
}

// runTool runs a CLI with HOME in a temp dir (no sigstore cache or docker
// config of the user's) and returns its combined output.
func runTool(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TUF_ROOT=" + filepath.Join(dir, ".sigstore")}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func cosignVerify(t *testing.T, dir, pub string, d name.Digest) (string, error) {
	return runTool(t, dir, nil, "cosign", "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", d.String())
}

func cosignVerifyAttestation(t *testing.T, dir, pub string, d name.Digest) (string, error) {
	return runTool(t, dir, nil, "cosign", "verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance1", d.String())
}

func TestCosignAcceptsOurSignaturesAndAttestations(t *testing.T) {
	ctx := context.Background()
	tg := distribution(t)
	dir := t.TempDir()
	for _, kt := range []signing.KeyType{signing.ECDSA, signing.ED25519, signing.RSA} {
		t.Run(string(kt), func(t *testing.T) {
			key := genKey(t, kt)
			pub := writePub(t, dir, key)
			src := filepath.Join(dir, "artifact-"+string(kt))
			writeRandomFile(t, src, 1<<20, 7)
			img, err := FromFile(src)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Push(ctx, img, mustRef(t, tg.host+"/interop/"+string(kt)+":v1"), testOpts...)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := runTool(t, dir, nil, "crane", "validate", "--remote", d.String()); err != nil {
				t.Fatalf("crane validate --remote %s: %v\n%s", d, err, out)
			}
			if err := Sign(ctx, d, key, testOpts...); err != nil {
				t.Fatal(err)
			}
			if out, err := cosignVerify(t, dir, pub, d); err != nil || !strings.Contains(out, d.DigestStr()) {
				t.Fatalf("cosign verify: %v\n%s", err, out)
			}
			// cosign checks an RSA DSSE signature as PKCS#1 v1.5; pkg/signing
			// signs RSA with PSS (in-toto's scheme), so sign with CosignSigner.
			s, err := CosignSigner(key)
			if err != nil {
				t.Fatal(err)
			}
			env, err := signing.SignEnvelope(ctx, signing.PayloadTypeInToto, statementFor(d, slsaV1), s)
			if err != nil {
				t.Fatal(err)
			}
			if err := Attest(ctx, d, env, slsaV1, testOpts...); err != nil {
				t.Fatal(err)
			}
			if out, err := cosignVerifyAttestation(t, dir, pub, d); err != nil {
				t.Fatalf("cosign verify-attestation: %v\n%s", err, out)
			}
			if _, err := VerifyAttestations(ctx, d, key.Public(), nil, testOpts...); err != nil {
				t.Fatalf("our verifier on a cosign-scheme envelope: %v", err)
			}
			// The signature and attestation copied to another image: cosign
			// rejects them as we do.
			other := pushRandom(t, tg.host, "interop/"+string(kt), "other")
			for _, tags := range [][2]name.Tag{{SignatureTag(d), SignatureTag(other)}, {AttestationTag(d), AttestationTag(other)}} {
				img, err := Pull(ctx, tags[0], testOpts...)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Push(ctx, img, tags[1], testOpts...); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := cosignVerify(t, dir, pub, other); err == nil {
				t.Fatalf("cosign verify accepted a copied signature:\n%s", out)
			}
			if out, err := cosignVerifyAttestation(t, dir, pub, other); err == nil {
				t.Fatalf("cosign verify-attestation accepted a copied attestation:\n%s", out)
			}
			if _, err := VerifySignatures(ctx, other, key.Public(), testOpts...); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("our verifier on the copied signature: %v", err)
			}
		})
	}
}

func TestWeAcceptCosignSignatures(t *testing.T) {
	ctx := context.Background()
	tg := distribution(t)
	dir := t.TempDir()
	env := []string{"COSIGN_PASSWORD=correct horse"}
	if out, err := runTool(t, dir, env, "cosign", "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	d := pushRandom(t, tg.host, "interop/cosign", "v1")
	if out, err := runTool(t, dir, env, "cosign", "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "-y", d.String()); err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	pred := filepath.Join(dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://stepseal.dev/test/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://stepseal.dev/test"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, dir, env, "cosign", "attest", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "-y", "--type", "slsaprovenance1", "--predicate", pred, d.String()); err != nil {
		t.Fatalf("cosign attest: %v\n%s", err, out)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySignatures(ctx, d, pub, testOpts...); err != nil {
		t.Fatalf("cosign's signature: %v", err)
	}
	atts, err := VerifyAttestations(ctx, d, pub, []AttestationOption{WithPredicateType(slsaV1)}, testOpts...)
	if err != nil {
		t.Fatalf("cosign's attestation: %v", err)
	}
	if len(atts) != 1 {
		t.Fatalf("%d attestations", len(atts))
	}
	// Our signature with cosign's own (encrypted) key file, checked by cosign.
	keyPEM, err := os.ReadFile(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.ParsePrivateKeyPEM(keyPEM, signing.StaticPass("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	d2 := pushRandom(t, tg.host, "interop/cosign", "v2")
	if err := Sign(ctx, d2, key, testOpts...); err != nil {
		t.Fatal(err)
	}
	if out, err := cosignVerify(t, dir, filepath.Join(dir, "cosign.pub"), d2); err != nil {
		t.Fatalf("cosign verify of our signature with cosign's key: %v\n%s", err, out)
	}
	// A key that did not sign is refused.
	if _, err := VerifySignatures(ctx, d, genKey(t, signing.ECDSA).Public(), testOpts...); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong key on cosign's signature: %v", err)
	}
}

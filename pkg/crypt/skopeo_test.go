package crypt

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stepseal/stepseal/internal/testregistry"
)

func skopeo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("skopeo", append([]string{"--insecure-policy"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("skopeo %s\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

func writeKeyFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, d := range m.Layers {
		out = append(out, d.Digest)
	}
	return out
}

// TestSkopeoInterop runs skopeo 1.9 (Debian) against the Distribution
// registry: skopeo decrypts what EncryptFor produced with each authorized
// platform's key and not with another; a recipient added by hand with
// skopeo is caught by CheckRecipients; Decrypt opens what skopeo encrypted.
func TestSkopeoInterop(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatal("skopeo not installed: run hack/install-test-deps.sh")
	}
	host := testregistry.Start(t)
	dir := t.TempDir()
	a, b, c := testKey(t, rsa2048, "a"), testKey(t, p256, "b"), testKey(t, p384, "c")
	pol := newPolicy(t, 1, []platformSpec{{name: "a", key: a}, {name: "b", key: b, jwk: true}, {name: "c", key: c}},
		[]string{"*/demo/**", "a", "b"}, []string{"*/c-only/**", "c"})
	keyFile := map[string]string{}
	for n, k := range map[string]crypto.Signer{"a": a, "b": b, "c": c} {
		keyFile[n] = writeKeyFile(t, dir, n+".key", privPEM(t, k))
		keyFile[n+".pub"] = writeKeyFile(t, dir, n+".pub", []byte(pubPEM(t, k.Public())))
	}
	plain := ociImage(t, 2<<20, 2)
	want := layerDigests(t, plain)

	ref := host + "/demo/app:v1"
	enc, err := EncryptFor(ctx, pol, ref, plain)
	if err != nil {
		t.Fatal(err)
	}
	push(t, ref, enc)
	if err := CheckRecipients(pull(t, ref), pol, ref); err != nil {
		t.Fatalf("pushed image: %v", err)
	}

	t.Run("skopeo decrypts with each authorized key", func(t *testing.T) {
		for _, p := range []string{"a", "b"} {
			out := filepath.Join(dir, "oci-"+p)
			if _, err := skopeo(t, "copy", "--src-tls-verify=false", "--decryption-key", keyFile[p], "docker://"+ref, "oci:"+out+":v1"); err != nil {
				t.Fatalf("platform %s: %v", p, err)
			}
			idx, err := layout.ImageIndexFromPath(out)
			if err != nil {
				t.Fatal(err)
			}
			im, _ := idx.IndexManifest()
			img, err := idx.Image(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			if got := layerDigests(t, img); !equalHashes(got, want) {
				t.Fatalf("platform %s: decrypted layer digests %v, want %v", p, got, want)
			}
			if !equalLayers(layerBytes(t, img), layerBytes(t, plain)) {
				t.Fatalf("platform %s: decrypted layers differ", p)
			}
		}
	})
	t.Run("skopeo fails with another platform's key", func(t *testing.T) {
		out, err := skopeo(t, "copy", "--src-tls-verify=false", "--decryption-key", keyFile["c"], "docker://"+ref, "oci:"+filepath.Join(dir, "oci-c")+":v1")
		if err == nil || !strings.Contains(out, "decrypt") {
			t.Fatalf("skopeo with platform c's key: err %v", err)
		}
		if _, err := Decrypt(ctx, pull(t, ref), c); !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("Decrypt with platform c's key: %v", err)
		}
	})
	t.Run("recipient added with skopeo is rejected", func(t *testing.T) {
		// The attacker holds a's key, re-encrypts to a and b as before and
		// adds c. (skopeo 1.9's go-jose refuses JWK encryption keys, so an
		// attacker using it cannot forge our kids; forged kids are covered
		// by TestAttackExtraRecipient and TestAttackRelabeledSameShape.)
		for _, tc := range []struct {
			name, tag string
			keys      []string
			want      []string
		}{
			{"pem", "injected-pem", []string{keyFile["a.pub"], keyFile["b.pub"], keyFile["c.pub"]}, []string{"unidentified recipient", "missing: a (", ", b ("}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// skopeo refuses --encryption-key with --decryption-key:
				// decrypt to a layout, then encrypt from it.
				dst := host + "/demo/app:" + tc.tag
				stage := "oci:" + filepath.Join(dir, "stage-"+tc.name) + ":v1"
				if _, err := skopeo(t, "copy", "--src-tls-verify=false", "--decryption-key", keyFile["a"], "docker://"+ref, stage); err != nil {
					t.Fatal(err)
				}
				args := []string{"copy", "--dest-tls-verify=false"}
				for _, k := range tc.keys {
					args = append(args, "--encryption-key", "jwe:"+k)
				}
				if _, err := skopeo(t, append(args, stage, "docker://"+dst)...); err != nil {
					t.Fatal(err)
				}
				injected := pull(t, dst)
				err := CheckRecipients(injected, pol, dst)
				if !errors.Is(err, ErrRecipients) {
					t.Fatalf("CheckRecipients = %v, want ErrRecipients", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				// c really can decrypt it: the check above is what stops it.
				if _, err := skopeo(t, "copy", "--src-tls-verify=false", "--decryption-key", keyFile["c"], "docker://"+dst, "oci:"+filepath.Join(dir, "oci-inj-"+tc.name)+":v1"); err != nil {
					t.Fatalf("injected recipient c cannot decrypt: %v", err)
				}
			})
		}
	})
	t.Run("Decrypt opens what skopeo encrypted", func(t *testing.T) {
		src, dst := host+"/demo/plain:v1", host+"/demo/skopeo-enc:v1"
		push(t, src, plain)
		if _, err := skopeo(t, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--encryption-key", "jwe:"+keyFile["a.pub"], "docker://"+src, "docker://"+dst); err != nil {
			t.Fatal(err)
		}
		enc := pull(t, dst)
		rs, err := Recipients(enc)
		if err != nil || len(rs) != 2 || rs[0].Algorithm != "RSA-OAEP" || rs[0].Shape != "RSA-2048" || rs[0].KeyID != "" {
			t.Fatalf("recipients of skopeo's image: %v %v", rs, err)
		}
		dec, err := Decrypt(ctx, enc, a)
		if err != nil {
			t.Fatal(err)
		}
		if got := layerDigests(t, dec); !equalHashes(got, want) {
			t.Fatalf("layer digests %v, want %v", got, want)
		}
		if !equalLayers(layerBytes(t, dec), layerBytes(t, plain)) {
			t.Fatal("plaintext differs")
		}
		if _, err := Decrypt(ctx, enc, b); !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("platform b on skopeo's image: %v", err)
		}
	})
}

func equalHashes(a, b []v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

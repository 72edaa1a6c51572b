package publish

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestPublishCheckPull: the whole path — published encrypted to exactly
// the policy's platforms, signed, the provenance re-issued for the
// encrypted image; Check passes without any private key; Pull and Save
// give back the very bytes.
func TestPublishCheckPull(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p, img := e.file("app.bin", 1<<20+5)
	prov := statement(t, fileHex(t, p), e.publisher)
	r := e.publish(img, "demo/app:v1", Attestation{Source: "provenance.json", Envelope: prov})
	if !r.Encrypted || strings.Join(r.Platforms, ",") != "eu,us" || r.Rule != "*/demo/**" || len(r.Attested) != 1 || !r.Attested[0].Reissued || r.Reissued() != 1 {
		t.Fatalf("result %+v", r)
	}
	if r.Attested[0].Subject.Hex != fileHex(t, p) || r.Attested[0].Source != "provenance.json" {
		t.Fatalf("attested %+v", r.Attested[0])
	}
	if got := e.tagged("demo/app:v1"); got != r.Digest.DigestStr() {
		t.Fatalf("tag points at %s, published %s", got, r.Digest)
	}

	checked, err := Check(ctx, e.c, e.ref("demo/app:v1"), CheckOptions{Key: e.publisher.Public(), Policy: e.pol})
	if err != nil {
		t.Fatal(err)
	}
	if checked.Digest != r.Digest || !checked.Encrypted || len(checked.Recipients) != 2 || len(checked.Signatures) != 1 || checked.Rule.Match != "*/demo/**" {
		t.Fatalf("checked %+v", checked)
	}
	atts, err := e.c.VerifyAttestations(ctx, r.Digest, e.publisher.Public())
	if err != nil || len(atts) != 1 {
		t.Fatalf("attestations %v %v", atts, err)
	}
	if orig, err := oci.OriginalEnvelope(atts[0].Statement, r.Digest); err != nil || orig.Payload != prov.Payload {
		t.Fatalf("the original provenance is not inside the re-issued one: %v", err)
	}

	for _, platform := range []string{"eu", "us"} {
		pulled, err := Pull(ctx, e.c, e.ref("demo/app:v1"), PullOptions{CheckOptions: CheckOptions{Key: e.publisher.Public(), Policy: e.pol}, DecryptionKey: e.platform[platform]})
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(e.dir, "out-"+platform)
		if err := pulled.Save(out); err != nil {
			t.Fatal(err)
		}
		if fileHex(t, out) != fileHex(t, p) {
			t.Fatalf("%s pulled other bytes", platform)
		}
	}
	_, err = Pull(ctx, e.c, e.ref("demo/app:v1"), PullOptions{CheckOptions: CheckOptions{Key: e.publisher.Public(), Policy: e.pol}, DecryptionKey: e.platform["other"]})
	if !errors.Is(err, crypt.ErrNotRecipient) {
		t.Fatalf("a platform the policy does not name: %v, want crypt.ErrNotRecipient", err)
	}
	if _, err := Pull(ctx, e.c, e.ref("demo/app:v1"), PullOptions{CheckOptions: CheckOptions{Key: e.publisher.Public(), Policy: e.pol}}); !errors.Is(err, ErrNeedDecryptionKey) {
		t.Fatalf("pull without a key: %v", err)
	}
	if _, err := Check(ctx, e.c, e.ref("demo/app:v1"), CheckOptions{Key: e.publisher.Public()}); !errors.Is(err, ErrNeedPolicy) || reject.Of(err) != nil {
		t.Fatalf("check of an encrypted image without a policy: %v, want ErrNeedPolicy (no verdict)", err)
	}
}

// failingSigner is a key cosign's signer does not take: signing fails
// after the image was pushed by digest.
type failingSigner struct{ crypto.Signer }

// TestNothingUnsignedIsTagged: whatever fails after the push by digest —
// the signer, the registry refusing the signature, the attestation or the
// tag itself — the tag is not moved: it never points at an image that is
// not signed and attested.
func TestNothingUnsignedIsTagged(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p, img := e.file("app.bin", 64<<10)
	prov := Attestation{Source: "provenance.json", Envelope: statement(t, fileHex(t, p), e.publisher)}

	t.Run("signer fails", func(t *testing.T) {
		_, err := Publish(ctx, e.c, img, e.ref("demo/signer:v1"), Options{Policy: e.pol, Key: failingSigner{e.publisher}})
		if err == nil || !strings.Contains(err.Error(), "signing") {
			t.Fatalf("err = %v, want the signer's failure", err)
		}
		if !e.repositoryExists("demo/signer") {
			t.Fatal("the signer failed before the push by digest: not the case under test")
		}
		if d := e.tagged("demo/signer:v1"); d != "" {
			t.Fatalf("signing failed, but the tag points at %s", d)
		}
	})
	for _, c := range []struct{ name, refuse string }{
		{"registry refuses the signature", ".sig"},
		{"registry refuses the attestation", ".att"},
		{"registry refuses the tag", "/manifests/v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			proxy := refusingProxy(t, e.host, func(method, path string) bool {
				return method == "PUT" && strings.Contains(path, "/manifests/") && strings.HasSuffix(path, c.refuse)
			})
			repo := "demo/" + strings.ReplaceAll(c.name, " ", "-")
			ref, err := e.c.ParseReference(proxy + "/" + repo + ":v1")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Publish(ctx, e.c, img, ref, Options{Policy: e.pol, Key: e.publisher, Attestations: []Attestation{prov}})
			if err == nil || !strings.Contains(err.Error(), c.refuse) {
				t.Fatalf("err = %v, want the refused write of %s", err, c.refuse)
			}
			if d := e.tagged(repo + ":v1"); d != "" {
				t.Fatalf("the sequence failed, but the tag points at %s", d)
			}
		})
	}
}

// TestPublishRefusesForgedAndUnrelatedAttestations: an attestation with a
// forged signature, one signed by another key, and one about another
// artifact are refused before anything is pushed.
func TestPublishRefusesForgedAndUnrelatedAttestations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p, img := e.file("app.bin", 32<<10)
	genuine := statement(t, fileHex(t, p), e.publisher)
	forged := *genuine
	forged.Signatures = []dsse.Signature{{KeyID: genuine.Signatures[0].KeyID, Sig: "AAAA"}}
	other, _ := e.file("other.bin", 1024)
	cases := []struct {
		name string
		att  Attestation
		want error
	}{
		{"forged signature", Attestation{Source: "forged.json", Envelope: &forged}, reject.ErrSignature},
		{"signed by another key", Attestation{Source: "intruder.json", Envelope: statement(t, fileHex(t, p), genKey(t))}, reject.ErrSignature},
		{"about another artifact", Attestation{Source: "unrelated.json", Envelope: statement(t, fileHex(t, other), e.publisher)}, reject.ErrMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := "demo/" + strings.ReplaceAll(c.name, " ", "-")
			_, err := Publish(ctx, e.c, img, e.ref(repo+":v1"), Options{Policy: e.pol, Key: e.publisher, Attestations: []Attestation{c.att}})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.att.Source) {
				t.Fatalf("err = %v, want %v naming %s", err, c.want, c.att.Source)
			}
			if e.repositoryExists(repo) {
				t.Fatal("refused attestation, but something was pushed")
			}
		})
	}
	// A refusal of the policy comes before any push too.
	if _, err := Publish(ctx, e.c, img, e.ref("elsewhere/app:v1"), Options{Policy: e.pol, Key: e.publisher}); !errors.Is(err, policy.ErrNoRule) || !errors.Is(err, reject.ErrPolicy) {
		t.Fatalf("no rule: %v", err)
	}
	if e.repositoryExists("elsewhere/app") {
		t.Fatal("no rule, but something was pushed")
	}
}

// TestCheckRefusesRecipientsOtherThanPolicy: Check compares the recipients
// with the policy as it is, without decrypting: an extra platform, a
// missing one, and a clear image where the policy wants encryption are
// reject.ErrPolicy; signatures by another key or none are refused too.
func TestCheckRefusesRecipientsOtherThanPolicy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	_, img := e.file("app.bin", 16<<10)
	e.publish(img, "demo/app:v1")
	e.publish(img, "public/app:v1")
	key := e.publisher.Public()
	for _, c := range []struct {
		name string
		ref  string
		pol  *policy.Policy
		want string
	}{
		{"a platform removed from the policy", "demo/app:v1", e.policy(2, "[eu]"), "extra"},
		{"a platform added to the policy", "demo/app:v1", e.policy(2, "[eu, us, other]"), "missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Check(ctx, e.c, e.ref(c.ref), CheckOptions{Key: key, Policy: c.pol})
			var re *crypt.RecipientsError
			if !errors.Is(err, ErrRecipients) || !errors.Is(err, reject.ErrPolicy) || !errors.Is(err, crypt.ErrRecipients) || !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrRecipients (reject.ErrPolicy) saying %q", err, c.want)
			}
		})
	}
	t.Run("clear image where the policy wants encryption", func(t *testing.T) {
		d, err := e.c.Resolve(ctx, e.ref("public/app:v1"))
		if err != nil {
			t.Fatal(err)
		}
		// The same clear image and its signature, under a demo repository.
		moved := e.ref("demo/clear:v1")
		if _, err := e.c.Push(ctx, mustPull(t, e, d), moved); err != nil {
			t.Fatal(err)
		}
		md := moved.Context().Digest(d.DigestStr())
		if err := e.c.Sign(ctx, md, e.publisher); err != nil {
			t.Fatal(err)
		}
		_, err = Check(ctx, e.c, moved, CheckOptions{Key: key, Policy: e.pol})
		if !errors.Is(err, ErrRecipients) || !errors.Is(err, reject.ErrPolicy) || !strings.Contains(err.Error(), "requires encryption") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("signed by another key", func(t *testing.T) {
		_, err := Check(ctx, e.c, e.ref("demo/app:v1"), CheckOptions{Key: genKey(t).Public(), Policy: e.pol})
		if !errors.Is(err, oci.ErrSignature) || !errors.Is(err, reject.ErrSignature) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("tag moved to an unsigned image", func(t *testing.T) {
		_, other := e.file("other.bin", 1024)
		if _, err := e.c.Push(ctx, other, e.ref("public/app:v1")); err != nil {
			t.Fatal(err)
		}
		_, err := Check(ctx, e.c, e.ref("public/app:v1"), CheckOptions{Key: key, Policy: e.pol})
		if !errors.Is(err, oci.ErrNoSignature) || !errors.Is(err, reject.ErrMissing) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("registry down is no verdict", func(t *testing.T) {
		_, err := Check(ctx, e.c, mustParse(t, e, "127.0.0.1:1/demo/app:v1"), CheckOptions{Key: key, Policy: e.pol})
		if !errors.Is(err, reject.ErrUnableToCheck) || errors.Is(err, reject.ErrRefused) {
			t.Fatalf("err = %v, want could not check", err)
		}
	})
}

// TestCheckConcurrent: one Client, many Checks at once (an admission
// webhook's load).
func TestCheckConcurrent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	_, img := e.file("app.bin", 16<<10)
	want := e.publish(img, "demo/app:v1").Digest
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := Check(ctx, e.c, e.ref("demo/app:v1"), CheckOptions{Key: e.publisher.Public(), Policy: e.pol})
			if err == nil && got.Digest != want {
				err = errors.New("resolved " + got.Digest.String())
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestPullRefusesDigestMismatch: a blob changed in the registry's storage
// is refused when read, encrypted or not, and nothing is written.
func TestPullRefusesDigestMismatch(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for _, repo := range []string{"demo", "public"} {
		t.Run(repo, func(t *testing.T) {
			_, img := e.file(repo+".bin", 256<<10)
			r := e.publish(img, repo+"/tampered:v1")
			m := mustPull(t, e, r.Digest)
			mf, err := m.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			blob := e.srv.BlobPath(mf.Layers[0].Digest.String())
			data, err := os.ReadFile(blob)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 1
			if err := os.WriteFile(blob, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(e.dir, repo+"-out")
			pulled, err := Pull(ctx, e.c, r.Digest, PullOptions{CheckOptions: CheckOptions{Key: e.publisher.Public(), Policy: e.pol}, DecryptionKey: e.platform["eu"]})
			if err == nil {
				err = pulled.Save(out)
			}
			if !errors.Is(err, oci.ErrBlobDigest) || !errors.Is(err, reject.ErrMismatch) || !strings.Contains(err.Error(), mf.Layers[0].Digest.String()) {
				t.Fatalf("err = %v, want oci.ErrBlobDigest (reject.ErrMismatch) naming the blob", err)
			}
			if _, err := os.Lstat(out); err == nil {
				t.Fatal("a tampered pull wrote its output")
			}
		})
	}
}

// TestLoadPolicyRefusesRollback: a signed policy older than one accepted
// before, or the same version with other content, is refused before it
// can decide anything.
func TestLoadPolicyRefusesRollback(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	owner := genKey(t)
	s, err := signing.NewSigner(owner)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(owner.Public())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, p *policy.Policy) string {
		signed, err := policy.Sign(ctx, p, s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(e.dir, name)
		if err := os.WriteFile(path, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	v1, v2, fork := write("v1.json", e.policy(1, "[eu, us]")), write("v2.json", e.policy(2, "[eu]")), write("fork.json", e.policy(2, "[eu, us]"))
	state := filepath.Join(e.dir, "state")
	load := func(path string) (*policy.Policy, error) {
		return LoadPolicy(PolicySource{Path: path, Keys: []signing.Verifier{v}, StateDir: state})
	}
	if _, err := load(v1); err != nil {
		t.Fatal(err)
	}
	if p, err := load(v2); err != nil || p.Version != 2 {
		t.Fatal(p, err)
	}
	for _, path := range []string{v1, fork} {
		if _, err := load(path); !errors.Is(err, policy.ErrRollback) || !errors.Is(err, reject.ErrRollback) {
			t.Errorf("%s after v2: %v, want policy.ErrRollback", filepath.Base(path), err)
		}
	}
	// Unsigned, with owner keys: refused as a signature failure.
	plain := filepath.Join(e.dir, "plain.yaml")
	if err := os.WriteFile(plain, e.policyDoc(3, "[eu]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := load(plain); !errors.Is(err, policy.ErrSignature) || !errors.Is(err, reject.ErrSignature) {
		t.Errorf("unsigned policy with owner keys: %v", err)
	}
	// Without keys the policy is not tracked.
	if _, err := LoadPolicy(PolicySource{Path: plain}); err != nil {
		t.Error(err)
	}
}

// TestRotate: after a platform is removed from the policy, Rotate
// re-encrypts with fresh keys to the platforms it names now, moves the tag
// and the attestations, and deletes the old manifest.
func TestRotate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p, img := e.file("app.bin", 128<<10)
	old := e.publish(img, "demo/app:v1", Attestation{Source: "provenance.json", Envelope: statement(t, fileHex(t, p), e.publisher)})
	now := e.policy(2, "[eu]")
	tag := e.ref("demo/app:v1").(name.Tag)
	r, err := Rotate(ctx, e.c, tag, RotateOptions{Policy: now, Key: e.publisher, DecryptionKey: e.platform["us"]})
	if err != nil {
		t.Fatal(err)
	}
	if r.Old != old.Digest || r.New == old.Digest || strings.Join(r.Platforms, ",") != "eu" || r.Attestations != 1 || !r.OldDeleted || r.DeleteError != nil {
		t.Fatalf("rotated %+v", r)
	}
	if got := e.tagged("demo/app:v1"); got != r.New.DigestStr() {
		t.Fatalf("tag at %s, want %s", got, r.New)
	}
	if _, err := Check(ctx, e.c, tag, CheckOptions{Key: e.publisher.Public(), Policy: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, e.c, tag, PullOptions{CheckOptions: CheckOptions{Key: e.publisher.Public(), Policy: now}, DecryptionKey: e.platform["us"]}); !errors.Is(err, crypt.ErrNotRecipient) {
		t.Fatalf("the removed platform: %v, want crypt.ErrNotRecipient", err)
	}
	if _, err := Rotate(ctx, e.c, tag, RotateOptions{Policy: now, Key: genKey(t), DecryptionKey: e.platform["eu"]}); !errors.Is(err, reject.ErrSignature) || !strings.Contains(err.Error(), "refusing to rotate") {
		t.Fatalf("rotate with a key that did not sign it: %v", err)
	}
	rs, err := Recipients(ctx, e.c, tag, e.pol)
	if err != nil {
		t.Fatal(err)
	}
	if !rs.Encrypted() || strings.Join(rs.Platforms, ",") != "eu" || !errors.Is(rs.Mismatch, ErrRecipients) {
		t.Fatalf("recipients under the old policy: %+v", rs)
	}
	if rs, err := Recipients(ctx, e.c, tag, now); err != nil || rs.Mismatch != nil || rs.Policy != "test" {
		t.Fatalf("recipients under the new policy: %+v %v", rs, err)
	}
}

func mustPull(t *testing.T, e *env, d name.Reference) v1.Image {
	t.Helper()
	img, err := e.c.Pull(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustParse(t *testing.T, e *env, s string) name.Reference {
	t.Helper()
	r, err := e.c.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPublishToDigestRef: a reference by digest promises that digest. A
// plaintext artifact published to its own digest is pushed and signed
// (nothing tagged); to another digest, or an encrypted one (its digest
// exists only once it is encrypted), it is refused before anything is
// pushed, naming both digests.
func TestPublishToDigestRef(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	_, img := e.file("app.bin", 64<<10)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("0", 64)
	for _, c := range []struct{ repo, digest, want string }{
		{"public/other", other, d.String()},
		{"demo/encrypted", d.String(), "encrypted image's digest"},
	} {
		_, err := Publish(ctx, e.c, img, e.ref(c.repo+"@"+c.digest), Options{Policy: e.pol, Key: e.publisher})
		if !errors.Is(err, oci.ErrDigestMismatch) || !strings.Contains(err.Error(), c.digest) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("publish to %s@%s: %v, want oci.ErrDigestMismatch naming both digests", c.repo, c.digest, err)
		}
		if e.repositoryExists(c.repo) {
			t.Fatalf("refused publish to %s pushed something", c.repo)
		}
	}
	r, err := Publish(ctx, e.c, img, e.ref("public/app@"+d.String()), Options{Policy: e.pol, Key: e.publisher})
	if err != nil {
		t.Fatal(err)
	}
	if r.Digest.DigestStr() != d.String() || r.Encrypted {
		t.Fatalf("published %s (encrypted %v), want %s in plaintext", r.Digest, r.Encrypted, d)
	}
	if _, err := Check(ctx, e.c, r.Digest, CheckOptions{Key: e.publisher.Public(), Policy: e.pol}); err != nil {
		t.Fatalf("check of the published digest: %v", err)
	}
}

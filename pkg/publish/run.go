package publish

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// RunPolicy is a platform policy made ready for one embedded run
// (PrepareRunPolicy).
type RunPolicy struct {
	// Policy is the signed policy as a client loaded it back.
	Policy *policy.Policy
	// SignedPath is the signed policy file.
	SignedPath string
	// PlatformKeys are the private keys made for platforms that had no
	// publicKey, by platform name; Made lists those platforms in document
	// order, KeyDir is where their key pairs were written.
	PlatformKeys map[string]crypto.PrivateKey
	Made         []string
	KeyDir       string
}

// PrepareRunPolicy makes an example's platform policy (src) usable by one
// run whose output directory is out:
//
//  1. the document is decoded (policy.DecodeDocument, strictly);
//  2. every platform without a publicKey gets a throwaway EC P-256 key
//     pair, written to out/keys/platforms/<name>.key and .pub, its public
//     key inlined;
//  3. the policy is parsed, signed by owner (keys inline) into
//     out/platform-policy.json,
//  4. and loaded back the way a client would: signature checked, and
//     rollback checked against the run's own state (out/state), so every
//     run starts from none.
func PrepareRunPolicy(ctx context.Context, src, out string, owner signing.Signer) (*RunPolicy, error) {
	// 1.
	raw, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	doc, err := policy.DecodeDocument(raw, src)
	if err != nil {
		return nil, err
	}
	// 2.
	rp := &RunPolicy{PlatformKeys: map[string]crypto.PrivateKey{}, KeyDir: filepath.Join(out, "keys", "platforms")}
	for i := range doc.Spec.Platforms {
		p := &doc.Spec.Platforms[i]
		if p.HasPublicKey() {
			continue
		}
		if p.Name == "" || strings.ContainsAny(p.Name, `/\`) {
			return nil, fmt.Errorf("%s: platform without a usable name", src)
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if _, _, err := signing.WriteKeyPair(rp.KeyDir, p.Name, k, nil); err != nil {
			return nil, err
		}
		if err := p.SetPublicKey(k.Public()); err != nil {
			return nil, err
		}
		rp.PlatformKeys[p.Name] = k
		rp.Made = append(rp.Made, p.Name)
	}
	// 3.
	data, err := doc.Marshal()
	if err != nil {
		return nil, err
	}
	pol, err := policy.Parse(data, src, policy.Options{BaseDir: filepath.Dir(src)})
	if err != nil {
		return nil, err
	}
	signed, err := policy.Sign(ctx, pol, owner)
	if err != nil {
		return nil, err
	}
	rp.SignedPath = filepath.Join(out, "platform-policy.json")
	if err := signing.WriteFileAtomic(rp.SignedPath, signed, 0o644); err != nil {
		return nil, err
	}
	// 4.
	ov, err := signing.NewVerifier(owner.Public())
	if err != nil {
		return nil, err
	}
	if rp.Policy, err = policy.Load(rp.SignedPath, policy.Options{Keys: []signing.Verifier{ov}, State: policy.NewState(filepath.Join(out, "state"))}); err != nil {
		return nil, err
	}
	return rp, nil
}

// RunOutput is a verified run's declared output to publish.
type RunOutput struct {
	// Policy decides who can decrypt it; PlatformKeys are the private keys
	// of platforms available here, to pull it back with.
	Policy       *policy.Policy
	PlatformKeys map[string]crypto.PrivateKey
	// Pipeline and RunID name the repository and tag.
	Pipeline, RunID string
	// File is the output, Provenance the run's signed provenance about it
	// (optional).
	File       string
	Provenance *dsse.Envelope
	// Publisher signs the image and re-issues the provenance for it; the
	// provenance must be signed by it.
	Publisher crypto.Signer
}

// RunPublished is where PublishRunOutput published a run's output.
type RunPublished struct {
	// Registry is the in-process registry's host; it is gone once
	// PublishRunOutput returns.
	Registry string
	Ref      name.Reference
	Digest   name.Digest
	// Platforms can decrypt it, under Policy.
	Platforms []string
	Policy    *policy.Policy
	// PulledBackAs is the platform it was pulled back as ("" when no
	// platform's private key is here, or it is public), with Recipients as
	// Check listed them; Verified says it decrypted to the output's bytes.
	PulledBackAs string
	Recipients   []crypt.Recipient
	Verified     bool
}

// PublishRunOutput publishes a run's output to an in-process registry,
// the way Publish would to any:
//
//  1. the provenance must be signed by the publisher and about the file
//     (as for an attestation of Publish);
//  2. the output is encrypted to exactly the platforms the policy names,
//     pushed by digest, signed, attested with the provenance re-issued for
//     the encrypted image (original envelope inside), then tagged
//     <pipeline>/<file name>:<run ID>;
//  3. it is pulled back as the policy's first platform, when its private
//     key is here (Pull: signature, recipients = policy, decryption), and
//     must decrypt to the very bytes of the file (ErrArtifactDiffers).
//
// The result is returned with the error of step 3 too: the output was
// published by then.
func PublishRunOutput(ctx context.Context, o RunOutput) (*RunPublished, error) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		return nil, err
	}
	repo := strings.TrimSuffix(path.Base(filepath.ToSlash(o.File)), filepath.Ext(o.File))
	repo = strings.TrimSuffix(repo, ".tar")
	ref, err := c.ParseReference(fmt.Sprintf("%s/%s/%s:%s", host, o.Pipeline, sanitizeRepo(repo), o.RunID))
	if err != nil {
		return nil, err
	}
	img, err := oci.FromFile(o.File)
	if err != nil {
		return nil, err
	}
	// A file artifact's one layer is the file's bytes: its digest is the
	// file's sha256, what the pulled-back bytes must hash to.
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	want := m.Layers[0].Digest.Hex
	// 1. and 2.
	opts := Options{Policy: o.Policy, Key: o.Publisher, AttestKeys: []oci.StatementKey{{Name: "the publisher key", Public: o.Publisher.Public()}}}
	if o.Provenance != nil {
		opts.Attestations = []Attestation{{Source: "provenance.json", Envelope: o.Provenance}}
	}
	pr, err := Publish(ctx, c, img, ref, opts)
	if err != nil {
		return nil, err
	}
	r := &RunPublished{Registry: host, Ref: ref, Digest: pr.Digest, Platforms: pr.Platforms, Policy: o.Policy}
	// 3.
	if len(pr.Platforms) == 0 {
		return r, nil
	}
	platform := pr.Platforms[0]
	key, ok := o.PlatformKeys[platform]
	if !ok {
		return r, nil
	}
	pulled, err := Pull(ctx, c, ref, PullOptions{CheckOptions: CheckOptions{Key: o.Publisher.Public(), Policy: o.Policy}, DecryptionKey: key})
	if err != nil {
		return r, fmt.Errorf("pulling back %s as platform %s: %w", ref, platform, err)
	}
	r.PulledBackAs, r.Recipients = platform, pulled.Recipients
	layers, err := pulled.Image.Layers()
	if err != nil || len(layers) != 1 {
		return r, fmt.Errorf("%w: pulled %s: want one layer", oci.ErrArtifact, ref)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		return r, err
	}
	h := sha256.New()
	_, err = io.Copy(h, rc)
	rc.Close()
	if err != nil {
		return r, err
	}
	if hex.EncodeToString(h.Sum(nil)) != want {
		return r, &alsoError{err: fmt.Errorf("%w: %s decrypted to a different artifact than the verified output", crypt.ErrDigest, ref), also: ErrArtifactDiffers}
	}
	r.Verified = true
	return r, nil
}

// sanitizeRepo makes s usable as a repository path component.
func sanitizeRepo(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "artifact"
	}
	return b.String()
}

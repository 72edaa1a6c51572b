package cmd

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/pkg/crypt"
	"github.com/stepseal/stepseal/pkg/embedded"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// publishedReport says where `stepseal run` published the pipeline's output.
type publishedReport = embedded.Published

// prepareRunPolicy reads the example's platform policy, gives every platform
// without a publicKey a throwaway EC P-256 key pair (keys/platforms/), signs
// the policy with the owner key (keys inline) into DIR/platform-policy.json
// and loads it back the way a client would: signature and rollback checked
// (against DIR/state).
func prepareRunPolicy(ctx context.Context, w io.Writer, src, out string, owner signing.Signer) (*policy.Policy, map[string]crypto.PrivateKey, error) {
	raw, err := os.ReadFile(src)
	if err != nil {
		return nil, nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", src, err)
	}
	spec, _ := doc["spec"].(map[string]any)
	platforms, _ := spec["platforms"].([]any)
	keys := map[string]crypto.PrivateKey{}
	keyDir := filepath.Join(out, "keys", "platforms")
	var made []string
	for _, p := range platforms {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if _, has := pm["publicKey"]; has {
			continue
		}
		name, _ := pm["name"].(string)
		if name == "" || strings.ContainsAny(name, `/\`) {
			return nil, nil, fmt.Errorf("%s: platform without a usable name", src)
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		if _, _, err := signing.WriteKeyPair(keyDir, name, k, nil); err != nil {
			return nil, nil, err
		}
		pub, err := signing.MarshalPublicKeyPEM(k.Public())
		if err != nil {
			return nil, nil, err
		}
		pm["publicKey"] = string(pub)
		keys[name] = k
		made = append(made, name)
	}
	if len(made) > 0 {
		fmt.Fprintf(w, "making throwaway platform keys in %s (%s)\n", keyDir, strings.Join(made, ", "))
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	pol, err := policy.Parse(data, src, policy.Options{BaseDir: filepath.Dir(src)})
	if err != nil {
		return nil, nil, err
	}
	signed, err := policy.Sign(ctx, pol, owner)
	if err != nil {
		return nil, nil, err
	}
	signedPath := filepath.Join(out, "platform-policy.json")
	if err := signing.WriteFileAtomic(signedPath, signed, 0o644); err != nil {
		return nil, nil, err
	}
	ov, err := signing.NewVerifier(owner.Public())
	if err != nil {
		return nil, nil, err
	}
	// Read back as a client would, rollback check included; the state is
	// the run's own (DIR/state), so every run starts from none.
	pol, err = policy.Load(signedPath, policy.Options{Keys: []signing.Verifier{ov}, State: policy.NewState(filepath.Join(out, "state"))})
	if err != nil {
		return nil, nil, err
	}
	return pol, keys, nil
}

// publishRunOutput pushes the pipeline's declared output to an in-process
// registry, encrypted to exactly the platforms the policy names, signed and
// attested by the publisher key; then pulls it back as the first platform
// would and checks it decrypts to the verified output.
func publishRunOutput(ctx context.Context, w io.Writer, pol *policy.Policy, platformKeys map[string]crypto.PrivateKey, pipeline, runID, file string, prov *dsse.Envelope, publisher crypto.Signer) (*publishedReport, error) {
	srv := httptest.NewServer(registry.New(registry.Logger(nopLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ropts := []oci.Option{oci.WithInsecure(), oci.WithProgress(nil)}
	repo := strings.TrimSuffix(path.Base(filepath.ToSlash(file)), filepath.Ext(file))
	repo = strings.TrimSuffix(repo, ".tar")
	ref, err := oci.ParseReference(fmt.Sprintf("%s/%s/%s:%s", host, pipeline, sanitizeRepo(repo), runID), ropts...)
	if err != nil {
		return nil, err
	}
	img, err := oci.FromFile(file)
	if err != nil {
		return nil, err
	}
	// The provenance must be the publisher's and about this file, as for
	// publish --attest; it is re-issued for the encrypted image with the
	// original envelope inside.
	var vs *oci.VerifiedStatement
	if prov != nil {
		digests, err := oci.ArtifactDigests(img)
		if err != nil {
			return nil, err
		}
		if vs, err = oci.VerifyStatement(ctx, "provenance.json", prov, []oci.StatementKey{{Name: "the publisher key", Public: publisher.Public()}}, digests); err != nil {
			return nil, err
		}
	}
	img, pr, err := encryptForPolicy(ctx, img, ref, pol)
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	var atts []*dsse.Envelope
	if vs != nil {
		env, err := oci.Reissue(ctx, vs, ref.Context().Digest(d.String()), publisher)
		if err != nil {
			return nil, err
		}
		atts = append(atts, env)
	}
	dref, err := pushSigned(ctx, img, ref, publisher, atts, ropts)
	if err != nil {
		return nil, err
	}
	pr.Digest = dref.String()
	r := &publishedReport{Registry: host + " (in-process, gone when stepseal exits)", Ref: ref.String(), Digest: pr.Digest, Platforms: pr.Platforms, Policy: fmt.Sprintf("%s v%d", pol.Name, pol.Version)}
	fmt.Fprintf(w, "published %s\n  %s\n  encrypted to %v per policy %s (signed by the owner), signed and attested (SLSA provenance)\n", ref, pr.Digest, pr.Platforms, r.Policy)
	if len(pr.Platforms) == 0 {
		return r, nil
	}
	name := pr.Platforms[0]
	key, ok := platformKeys[name]
	if !ok {
		fmt.Fprintf(w, "  (no private key of platform %s here: not pulling it back)\n", name)
		return r, nil
	}
	got, pulled, err := pullVerified(ctx, ref, publisher.Public(), pol, key, ropts)
	if err != nil {
		return r, fmt.Errorf("pulling back %s as platform %s: %w", ref, name, err)
	}
	r.Recipients = pulled.Recipients
	want, err := fileSHA256(file)
	if err != nil {
		return r, err
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		return r, fmt.Errorf("pulled %s: want one layer", ref)
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
		return r, fmt.Errorf("%w: %s decrypted to a different artifact than the verified output", crypt.ErrDigest, ref)
	}
	r.Verified = true
	fmt.Fprintf(w, "  pulled back as platform %s: signature verified, recipients = policy, decrypted, sha256 matches the verified output\n", name)
	return r, nil
}

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

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

package publishtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/signing"
)

// File names inside Fixture.Dir: the stepseal-publish Task's defaults for
// its signing-key workspace (a Secret as the controller's signing-secrets
// is laid out) and its policy workspace.
const (
	KeyFile      = "cosign.key"
	PasswordFile = "cosign.password"
	PublicFile   = "cosign.pub"
	PolicyFile   = "platform-policy.json"
	OwnerFile    = "policy-owner.pub"
	// Password is the publisher key's password.
	Password = "correct horse battery staple"
)

// Fixture is a publisher, a platform and a signed policy v1 whose rules
// are: "*/demo/**" encrypted to the platform "eu", "*/public/**" in the
// clear; anything else no rule covers.
type Fixture struct {
	// Dir holds KeyFile, PasswordFile, PublicFile, PolicyFile and
	// OwnerFile (keys 0600).
	Dir       string
	Publisher crypto.Signer
	Platform  *ecdsa.PrivateKey
	Owner     crypto.Signer
	Policy    *policy.Policy
	// Files are the files by name, as a Secret's or ConfigMap's data.
	Files map[string][]byte
}

// New writes a fixture into a temporary directory of t.
func New(t testing.TB) *Fixture {
	t.Helper()
	f := &Fixture{Dir: t.TempDir(), Files: map[string][]byte{}}
	gen := func() crypto.Signer {
		k, err := signing.Generate(signing.ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	f.Publisher, f.Owner = gen(), gen()
	f.Platform = gen().(*ecdsa.PrivateKey)
	platformPEM, err := signing.MarshalPublicKeyPEM(f.Platform.Public())
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := json.Marshal(string(platformPEM))
	doc := fmt.Sprintf(`apiVersion: stepseal.dev/v1alpha1
kind: PlatformPolicy
metadata: {name: publish-test, version: 1}
spec:
  platforms:
  - name: eu
    publicKey: %s
  artifacts:
  - {match: "*/demo/**", platforms: [eu], encrypt: true}
  - {match: "*/public/**", platforms: [], encrypt: false}
`, pk)
	if f.Policy, err = policy.Parse([]byte(doc), "publishtest", policy.Options{}); err != nil {
		t.Fatal(err)
	}
	owner, err := signing.NewSigner(f.Owner)
	if err != nil {
		t.Fatal(err)
	}
	if f.Files[PolicyFile], err = policy.Sign(context.Background(), f.Policy, owner); err != nil {
		t.Fatal(err)
	}
	if f.Files[KeyFile], err = signing.MarshalPrivateKeyPEM(f.Publisher, []byte(Password)); err != nil {
		t.Fatal(err)
	}
	f.Files[PasswordFile] = []byte(Password)
	if f.Files[PublicFile], err = signing.MarshalPublicKeyPEM(f.Publisher.Public()); err != nil {
		t.Fatal(err)
	}
	if f.Files[OwnerFile], err = signing.MarshalPublicKeyPEM(f.Owner.Public()); err != nil {
		t.Fatal(err)
	}
	for n, b := range f.Files {
		if err := os.WriteFile(filepath.Join(f.Dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Path is the file n of the fixture.
func (f *Fixture) Path(n string) string { return filepath.Join(f.Dir, n) }

package controllertest

import (
	"context"
	"crypto"
	"encoding/json"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/layout/generate"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/tekton"
)

// SignedLayout is a layout generated from a Pipeline and signed by a new
// owner key.
type SignedLayout struct {
	Data     []byte
	Owner    signing.Verifier
	OwnerPub crypto.PublicKey
	OwnerKey in_toto.Key
}

// controllerFunctionaries: the controller performs every step.
const controllerFunctionaries = "apiVersion: stepseal.dev/v1alpha1\nkind: Functionaries\nmetadata: {name: release}\nspec:\n  functionaries: [{name: controller}]\n  steps: [{match: \"*\", functionaries: [controller]}]\n"

// ControllerLayout generates the layout of spec in which the controller
// (public key pub) performs every step — and, with skipSigner, signs the
// skip records — and signs it with a new ed25519 owner key.
func ControllerLayout(t testing.TB, spec *tekton.Spec, pub crypto.PublicKey, skipSigner bool) SignedLayout {
	t.Helper()
	doc := controllerFunctionaries
	if skipSigner {
		doc += "  skipSigner: controller\n"
	}
	f, err := layout.ParseFunctionaries([]byte(doc), "functionaries.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := signing.InTotoKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	l, err := generate.FromPipeline(spec, f, map[string]in_toto.Key{"controller": ck}, layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := signing.Generate(signing.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := signing.NewSigner(ok)
	if err != nil {
		t.Fatal(err)
	}
	return signLayout(t, l, owner)
}

// ControllerLayoutBy is ControllerLayout (without skip records) signed by
// owner: the key a TUF role releasing the layout delegates to.
func ControllerLayoutBy(t testing.TB, spec *tekton.Spec, pub crypto.PublicKey, owner signing.Signer) SignedLayout {
	t.Helper()
	f, err := layout.ParseFunctionaries([]byte(controllerFunctionaries), "functionaries.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := signing.InTotoKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	l, err := generate.FromPipeline(spec, f, map[string]in_toto.Key{"controller": ck}, layout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return signLayout(t, l, owner)
}

func signLayout(t testing.TB, l *in_toto.Layout, owner signing.Signer) SignedLayout {
	t.Helper()
	var err error
	out := SignedLayout{OwnerPub: owner.Public()}
	if out.Owner, err = signing.NewVerifier(owner.Public()); err != nil {
		t.Fatal(err)
	}
	if out.OwnerKey, err = signing.InTotoKey(owner.Public()); err != nil {
		t.Fatal(err)
	}
	mb, err := layout.Sign(context.Background(), *l, owner)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data, err = json.Marshal(mb); err != nil {
		t.Fatal(err)
	}
	return out
}

package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
)

// TestAdmissionCheck reproduces the webhook's decision offline against a
// real registry: a signed image is allowed, an unsigned one denied
// (exit error, JSON naming the rule and the reason), an uncovered one
// denied without a registry request.
func TestAdmissionCheck(t *testing.T) {
	host := testregistry.Start(t)
	key, err := signing.Generate(signing.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	push := func(repo string) name.Digest {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(host+"/"+repo+":v1", name.Insecure)
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
		h, _ := img.Digest()
		return tag.Context().Digest(h.String())
	}
	signed, unsigned := push("apps/signed"), push("apps/unsigned")
	if err := oci.Sign(context.Background(), signed, key, oci.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	pem, _ := signing.MarshalPublicKeyPEM(key.Public())
	js, _ := json.Marshal(string(pem))
	dir := t.TempDir()
	pol := filepath.Join(dir, "admission.yaml")
	doc := fmt.Sprintf("apiVersion: stepseal.dev/v1alpha1\nkind: AdmissionPolicy\nrules:\n- name: apps\n  images: [\"127.0.0.1:*/apps/**\"]\n  require: signed\n  keys: [%s]\n", js)
	if err := os.WriteFile(pol, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(img string) (admission.Decision, error) {
		out, err := runCLI(t, "admission", "check", img, "--policy", pol, "--platform", "eu", "--insecure", "-o", "json")
		var dec admission.Decision
		if jerr := json.Unmarshal([]byte(out), &dec); jerr != nil {
			t.Fatalf("%s: %v", out, jerr)
		}
		return dec, err
	}
	if dec, err := check(signed.String()); err != nil || !dec.Allowed || dec.Images[0].Rule != "apps" {
		t.Fatalf("signed: %v %+v", err, dec)
	}
	dec, err := check(unsigned.String())
	if !errors.Is(err, oci.ErrNoSignature) || dec.Allowed || dec.Images[0].Reason != "missing" || !strings.Contains(dec.Images[0].Message, `(rule "apps")`) {
		t.Fatalf("unsigned: %v %+v", err, dec)
	}
	dec, err = check("169.254.169.254/apps/x@" + signed.DigestStr())
	if !errors.Is(err, admission.ErrNoRule) || dec.Allowed {
		t.Fatalf("uncovered: %v %+v", err, dec)
	}
	out, err := runCLI(t, "admission", "check", host+"/apps/signed:v1", "--policy", pol, "--insecure")
	if !errors.Is(err, admission.ErrNotByDigest) || !strings.Contains(out, "DENIED  container check: image "+host+"/apps/signed:v1: image must be referenced by digest") {
		t.Fatalf("tag: %v %s", err, out)
	}
}

// TestAdmissionServeModes: serve takes the policy and certificate either
// from files or from the cluster, never a mix, and says so.
func TestAdmissionServeModes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"admission", "serve", "--policy", "p.yaml"}, "--tls-cert and --tls-key are required (or --policy-configmap in a cluster)"},
		{[]string{"admission", "serve", "--policy-configmap", "pol", "--policy", "p.yaml"}, "--policy-configmap takes the policy and certificate from the cluster: drop --policy, --tls-cert and --tls-key"},
		{[]string{"admission", "serve", "--policy-configmap", "pol", "--tls-cert", "c.pem"}, "drop --policy, --tls-cert and --tls-key"},
		{[]string{"admission", "serve", "--policy", "p.yaml", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--platform-label", "l"}, "--platform-label reads the cluster's Nodes: serve with --policy-configmap"},
	} {
		if _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

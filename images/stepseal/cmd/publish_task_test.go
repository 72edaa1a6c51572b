package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepseal/stepseal/internal/publishtest"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
)

// publishTaskEnv is what the stepseal-publish Task's step sees: a source
// workspace, the signing-key and policy workspaces beside it, result
// files, and a registry behind a counting proxy.
type publishTaskEnv struct {
	fx                  *publishtest.Fixture
	proxy               *publishtest.Proxy
	source, results     string
	keyDir, policyDir   string
	url, digest, outset string
}

func newPublishTaskEnv(t *testing.T) *publishTaskEnv {
	t.Helper()
	e := &publishTaskEnv{fx: publishtest.New(t)}
	e.proxy = publishtest.StartProxy(t, testregistry.Start(t), publishtest.ProxyOptions{})
	ws := t.TempDir()
	e.source, e.keyDir, e.policyDir, e.results = filepath.Join(ws, "source"), filepath.Join(ws, "signing-key"), filepath.Join(ws, "policy"), filepath.Join(ws, "results")
	for _, d := range []string{e.source, e.keyDir, e.policyDir, e.results} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for dir, names := range map[string][]string{
		e.keyDir:    {publishtest.KeyFile, publishtest.PasswordFile},
		e.policyDir: {publishtest.PolicyFile, publishtest.OwnerFile},
	} {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), e.fx.Files[n], 0o400); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(e.source, "app.txt"), []byte("the artifact\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.url, e.digest, e.outset = filepath.Join(e.results, "IMAGE_URL"), filepath.Join(e.results, "IMAGE_DIGEST"), filepath.Join(e.results, "ARTIFACT_OUTPUTS")
	return e
}

// args are the stepseal-publish Task's step args with these param values.
func (e *publishTaskEnv) args(artifact, image, key string) []string {
	return []string{"publish", artifact, image,
		"--source-dir=" + e.source,
		"--key=" + e.keyDir + "/" + key,
		"--key-password-file=" + e.keyDir + "/" + publishtest.PasswordFile,
		"--platform-policy=" + e.policyDir + "/" + publishtest.PolicyFile,
		"--policy-key=" + e.policyDir + "/" + publishtest.OwnerFile,
		"--state=" + filepath.Join(e.results, "..", "state"),
		"--result-image-url=" + e.url,
		"--result-image-digest=" + e.digest,
		"--result-artifact-outputs=" + e.outset,
		"--insecure", "-o", "json",
	}
}

// TestPublishTaskStep runs what the Task's step runs: the artifact is
// published encrypted, and the result files are what Chains reads.
func TestPublishTaskStep(t *testing.T) {
	e := newPublishTaskEnv(t)
	ref := e.proxy.Host + "/demo/app:v1"
	out := mustCLI(t, e.args("app.txt", ref, publishtest.KeyFile)...)
	for _, secret := range []string{publishtest.Password, string(e.fx.Files[publishtest.KeyFile])} {
		if strings.Contains(out, secret) {
			t.Fatalf("output shows the key or its password:\n%s", out)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(e.url); got != ref {
		t.Errorf("IMAGE_URL %q, want %q", got, ref)
	}
	digest := read(e.digest)
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != 71 {
		t.Fatalf("IMAGE_DIGEST %q", digest)
	}
	var ao publish.ArtifactOutput
	if err := json.Unmarshal([]byte(read(e.outset)), &ao); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("the artifact\n"))
	want := publish.ArtifactOutput{URI: "oci://" + e.proxy.Host + "/demo/app@" + digest, Digest: "sha256:" + hex.EncodeToString(sum[:]), IsBuildArtifact: "true"}
	if ao != want {
		t.Errorf("ARTIFACT_OUTPUTS %+v, want %+v", ao, want)
	}
	// What was pushed is signed by the publisher and encrypted to exactly
	// the policy's platform.
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.ParseReference(e.proxy.Host + "/demo/app@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := publish.Check(context.Background(), c, d, publish.CheckOptions{Key: e.fx.Publisher.Public(), Policy: e.fx.Policy})
	if err != nil {
		t.Fatal(err)
	}
	if !ck.Encrypted {
		t.Error("published in the clear; the policy says encrypt to eu")
	}
}

// TestPublishTaskStepRefusals are the refusals of the Task's step: each
// with stepseal's own message, and not one request to the registry (so
// nothing pushed or tagged, and no SSRF through a crafted IMAGE), and no
// result file written.
func TestPublishTaskStepRefusals(t *testing.T) {
	e := newPublishTaskEnv(t)
	outside := filepath.Join(filepath.Dir(e.source), "outside.txt")
	if err := os.WriteFile(outside, []byte("not for publishing"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(e.keyDir, publishtest.KeyFile), filepath.Join(e.source, "key-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(e.source, "up")); err != nil {
		t.Fatal(err)
	}
	host := e.proxy.Host
	for _, c := range []struct {
		name, artifact, image, key string
		is                         error
		want                       string
	}{
		// Refused before the key is read: its password file is absent.
		{name: "no rule covers the target", artifact: "app.txt", image: host + "/elsewhere/app:v1", key: "nopass", is: policy.ErrNoRule, want: host + "/elsewhere/app"},
		{name: "empty IMAGE", artifact: "app.txt", image: "", want: "REF is empty"},
		{name: "blank IMAGE", artifact: "app.txt", image: "  ", want: "REF is empty"},
		{name: "empty ARTIFACT", artifact: "", image: host + "/demo/app:v1", want: "PATH is empty"},
		{name: "empty KEY", artifact: "app.txt", image: host + "/demo/app:v1", key: "-", want: "the file name is empty"},
		{name: "IMAGE is a substitution", artifact: "app.txt", image: "$(params.x)", is: oci.ErrReference},
		{name: "IMAGE is a command", artifact: "app.txt", image: "; rm -rf /", is: oci.ErrReference},
		{name: "IMAGE with a newline", artifact: "app.txt", image: host + "/demo/app:v1\n" + host + "/elsewhere/x:v1", is: oci.ErrReference},
		{name: "ARTIFACT with ..", artifact: "../signing-key/" + publishtest.KeyFile, image: host + "/public/key:v1", is: publish.ErrOutsideSource},
		{name: "ARTIFACT absolute", artifact: outside, image: host + "/public/x:v1", is: publish.ErrOutsideSource},
		{name: "ARTIFACT symlink to the key", artifact: "key-link", image: host + "/public/key:v1", is: publish.ErrOutsideSource},
		{name: "ARTIFACT through a symlinked directory", artifact: "up/outside.txt", image: host + "/public/x:v1", is: publish.ErrOutsideSource},
		{name: "ARTIFACT is a command", artifact: "; rm -rf /", image: host + "/demo/app:v1", want: "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := publishtest.KeyFile
			if c.key == "-" {
				key = ""
			}
			args := e.args(c.artifact, c.image, key)
			if c.key == "nopass" {
				for i, a := range args {
					if strings.HasPrefix(a, "--key-password-file=") {
						args[i] += ".absent"
					}
				}
			}
			e.proxy.Reset()
			out, err := runCLI(t, args...)
			if err == nil {
				t.Fatalf("published:\n%s", out)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %q, want %v", err, c.is)
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to say %q", err, c.want)
			}
			if rq := e.proxy.Requests(); len(rq) != 0 {
				t.Errorf("the registry was contacted: %v", rq)
			}
			for _, f := range []string{e.url, e.digest, e.outset} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("result file %s written", f)
				}
			}
			if strings.Contains(err.Error(), publishtest.Password) || strings.Contains(out, "PRIVATE KEY") {
				t.Errorf("the key or its password shows: %v\n%s", err, out)
			}
			t.Logf("refused: %v", err)
		})
	}
}

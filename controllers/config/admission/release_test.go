package admissionconfig

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	ggcrname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/testregistry"
)

const stepsealImport = "github.com/stepseal/stepseal/images/stepseal-tekton"

// TestReleaseKoAdmission runs hack/release.sh with ADMISSION_YAML (what
// make release does) against a Distribution registry on loopback: the
// admission YAML holds the same objects as this directory, except that
// the Deployment's image is KO_DOCKER_REPO/stepseal-tekton@sha256:<digest>, which
// is in the registry, runs as 65532 and has the stepseal-tekton binary as its
// entrypoint (the Deployment's args make it `stepseal admission serve`).
func TestReleaseKoAdmission(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the images with ko")
	}
	if _, err := exec.LookPath(testregistry.Binary); err != nil {
		t.Skipf("%s not installed (run make deps)", testregistry.Binary)
	}
	reg := testregistry.StartServer(t)
	repo := reg.Host + "/stepseal"
	dir := t.TempDir()
	out := filepath.Join(dir, "admission.yaml")
	cmd := exec.Command("../../../hack/release.sh")
	cmd.Env = append(os.Environ(), "KO_DOCKER_REPO="+repo, "BASE_IMAGE=local",
		"RELEASE_YAML="+filepath.Join(dir, "release.yaml"), "ADMISSION_YAML="+out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/release.sh: %v\n%s", err, stderr.Bytes())
	}
	t.Logf("hack/release.sh took %v", time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("ko://")) {
		t.Error("admission.yaml still holds ko:// references")
	}
	resolved := kubetest.DecodeObjects(t, out, b)
	raw := kubetest.Objects(t, "*.yaml")
	if len(resolved) != len(raw) {
		t.Fatalf("admission.yaml holds %d objects, controllers/config/admission %d", len(resolved), len(raw))
	}
	var image string
	for i, obj := range resolved {
		want := raw[i]
		if obj.GetKind() == "Deployment" {
			image = setImage(t, obj, "")
			if got := setImage(t, want, ""); got != "ko://"+stepsealImport {
				t.Errorf("the Deployment runs %q, want ko://%s", got, stepsealImport)
			}
		}
		if !reflect.DeepEqual(obj.Object, want.Object) {
			t.Errorf("admission.yaml's object %d (%s %s) differs from controllers/config/admission's", i, obj.GetKind(), obj.GetName())
		}
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(repo) + `/stepseal-tekton@sha256:[0-9a-f]{64}$`).MatchString(image) {
		t.Fatalf("Deployment image %q, want %s/stepseal-tekton@sha256:<digest>", image, repo)
	}
	ref, err := ggcrname.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("the released image is not in the registry: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Config.Entrypoint; len(e) != 1 || e[0] != "/ko-app/stepseal-tekton" || cfg.Config.User != "65532" {
		t.Errorf("entrypoint %q user %q, want [/ko-app/stepseal-tekton] and 65532", e, cfg.Config.User)
	}
	t.Logf("admission image: %s", image)
}

// setImage sets the first container's image and returns the old one.
func setImage(t *testing.T, obj *unstructured.Unstructured, img string) string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		t.Fatal("Deployment without containers")
	}
	c := cs[0].(map[string]any)
	old, _ := c["image"].(string)
	c["image"] = img
	if err := unstructured.SetNestedSlice(obj.Object, cs, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(old)
}

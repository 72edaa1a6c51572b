package config

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stepseal/stepseal/internal/kubetest"
	"github.com/stepseal/stepseal/internal/testregistry"
)

const controllerImport = "github.com/stepseal/stepseal/images/controller"

// TestReleaseKo runs hack/release.sh the way `make release` does, against a
// Distribution registry on loopback, with a base image built on this host
// (BASE_IMAGE=local: no public registry here). The resolved YAML must hold
// the same objects as controllers/config/ with the Deployment's ko:// image
// replaced by a digest reference, and that image must be in the registry:
// linux/amd64, running as 65532, entrypoint the controller binary, which is
// images/controller built by Go. The script runs with an empty GOBIN and
// neither ko nor crane in PATH: it must install exactly those two, at the
// pinned versions, and nothing else of the test dependencies.
func TestReleaseKo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the controller image with ko")
	}
	lookTool(t, testregistry.Binary)
	lookTool(t, "tar")
	reg := testregistry.StartServer(t)
	repo := reg.Host + "/stepseal"
	out := filepath.Join(t.TempDir(), "release.yaml")
	ssOut := filepath.Join(t.TempDir(), "release-statefulset.yaml")
	gobin := t.TempDir()

	cmd := exec.Command("../../hack/release.sh")
	cmd.Env = append(os.Environ(),
		"KO_DOCKER_REPO="+repo, "BASE_IMAGE=local", "RELEASE_YAML="+out, "STATEFULSET_YAML="+ssOut,
		"GOBIN="+gobin, "PATH="+pathWithout(t, "ko", "crane"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/release.sh: %v\n%s", err, stderr.Bytes())
	}
	t.Logf("hack/release.sh took %v", time.Since(start).Round(time.Millisecond))
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(line, "hack/release.sh:") {
			t.Log(line)
		}
	}

	// What the script installed: ko and crane at the pins, nothing else.
	pins := releasePins(t)
	entries, err := os.ReadDir(gobin)
	if err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, e := range entries {
		installed = append(installed, e.Name())
	}
	if want := []string{"crane", "ko"}; !reflect.DeepEqual(installed, want) {
		t.Errorf("hack/release.sh installed %v into GOBIN, want %v", installed, want)
	}
	for _, bin := range []string{"ko", "crane"} {
		bi, err := buildinfo.ReadFile(filepath.Join(gobin, bin))
		if err != nil {
			t.Errorf("%s: %v", bin, err)
			continue
		}
		if got := bi.Path + "@" + bi.Main.Version; got != pins[bin] {
			t.Errorf("hack/release.sh installed %s as %s, want %s", bin, got, pins[bin])
		}
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("ko://")) {
		t.Errorf("release.yaml still holds ko:// references")
	}
	resolved := kubetest.DecodeObjects(t, out, b)
	raw := kubetest.Objects(t, "*.yaml")
	if len(resolved) != len(raw) {
		t.Fatalf("release.yaml holds %d objects, controllers/config %d", len(resolved), len(raw))
	}
	var image string
	for i, obj := range resolved {
		want := raw[i]
		if obj.GetKind() == "Deployment" {
			image = containerImage(t, obj)
			if got := containerImage(t, want); got != "ko://"+controllerImport {
				t.Errorf("controllers/config's Deployment runs %q, want ko://%s", got, controllerImport)
			}
			// Everything else is as written.
			setContainerImage(t, obj, "")
			setContainerImage(t, want, "")
		}
		if !reflect.DeepEqual(obj.Object, want.Object) {
			t.Errorf("release.yaml's object %d (%s %s) differs from controllers/config's", i, obj.GetKind(), obj.GetName())
		}
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(repo) + `/controller@sha256:[0-9a-f]{64}$`).MatchString(image) {
		t.Fatalf("Deployment image %q, want %s/controller@sha256:<digest>", image, repo)
	}
	t.Logf("controller image: %s", image)
	checkStatefulSetRelease(t, ssOut, image)

	ref, err := name.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref) // checks the manifest against the digest
	if err != nil {
		t.Fatalf("the released image is not in the registry: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("image platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	entry := cfg.Config.Entrypoint
	if len(entry) != 1 || entry[0] != "/ko-app/controller" {
		t.Fatalf("entrypoint %q, want [/ko-app/controller]", entry)
	}
	if cfg.Config.User != "65532" {
		t.Errorf("image user %q, want 65532 (nonroot, as the Deployment's runAsUser)", cfg.Config.User)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, l := range m.Layers {
		size += l.Size
	}
	t.Logf("image: %d layers, %.1f MB compressed", len(m.Layers), float64(size)/1e6)

	bin := extractFile(t, img, "ko-app/controller")
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("/ko-app/controller is not a Go binary: %v", err)
	}
	if bi.Path != controllerImport {
		t.Errorf("/ko-app/controller is %s, want %s", bi.Path, controllerImport)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["GOOS"] != "linux" || settings["GOARCH"] != "amd64" {
		t.Errorf("controller built with CGO_ENABLED=%q GOOS=%q GOARCH=%q, want a static linux/amd64 binary",
			settings["CGO_ENABLED"], settings["GOOS"], settings["GOARCH"])
	}
}

// checkStatefulSetRelease: STATEFULSET_YAML's file holds controllers/config's
// objects without 500-controller.yaml's and then
// optional/statefulset's, all as written except the StatefulSet's image,
// which is the Deployment's (image).
func checkStatefulSetRelease(t *testing.T, path, image string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	resolved := kubetest.DecodeObjects(t, path, b)
	var raw []*unstructured.Unstructured
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f != "500-controller.yaml" {
			raw = append(raw, kubetest.Objects(t, f)...)
		}
	}
	raw = append(raw, kubetest.Objects(t, "optional/statefulset/*.yaml")...)
	if len(resolved) != len(raw) {
		t.Fatalf("%s holds %d objects, want %d", filepath.Base(path), len(resolved), len(raw))
	}
	sets := 0
	for i, obj := range resolved {
		want := raw[i]
		if k := obj.GetKind(); k == "Deployment" {
			t.Errorf("%s holds Deployment %s", filepath.Base(path), obj.GetName())
		} else if k == "StatefulSet" {
			sets++
			if got := containerImage(t, obj); got != image {
				t.Errorf("StatefulSet runs %q, want the Deployment's %s", got, image)
			}
			setContainerImage(t, obj, "")
			setContainerImage(t, want, "")
		}
		if !reflect.DeepEqual(obj.Object, want.Object) {
			t.Errorf("%s's object %d (%s %s) differs from the source's", filepath.Base(path), i, obj.GetKind(), obj.GetName())
		}
	}
	if sets != 1 {
		t.Errorf("%s holds %d StatefulSets, want 1", filepath.Base(path), sets)
	}
}

func containerImage(t *testing.T, deploy *unstructured.Unstructured) string {
	t.Helper()
	cs, _, err := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	if err != nil || len(cs) != 1 {
		t.Fatalf("Deployment %s: %d containers (%v), want 1", deploy.GetName(), len(cs), err)
	}
	img, _ := cs[0].(map[string]any)["image"].(string)
	return img
}

func setContainerImage(t *testing.T, deploy *unstructured.Unstructured, image string) {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	cs[0].(map[string]any)["image"] = image
	if err := unstructured.SetNestedSlice(deploy.Object, cs, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
}

// extractFile returns the content of path in the image's filesystem (the
// topmost layer that has it).
func extractFile(t *testing.T, img v1.Image, path string) []byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		if b, ok := fileInLayer(t, layers[i], path); ok {
			return b
		}
	}
	t.Fatalf("no %s in the image", path)
	return nil
}

func fileInLayer(t *testing.T, l v1.Layer, path string) ([]byte, bool) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, false
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") == path && h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b, true
		}
	}
}

// pathWithout is $PATH without the directories that hold any of bins.
func pathWithout(t *testing.T, bins ...string) string {
	t.Helper()
	var keep []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		has := false
		for _, b := range bins {
			if fi, err := os.Stat(filepath.Join(dir, b)); err == nil && !fi.IsDir() {
				has = true
			}
		}
		if !has {
			keep = append(keep, dir)
		}
	}
	return strings.Join(keep, string(os.PathListSeparator))
}

// releasePins reads hack/release.sh's pins: binary name to package@version.
func releasePins(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../hack/release.sh")
	if err != nil {
		t.Fatal(err)
	}
	pins := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(ko|crane)_pkg=(\S+@v\S+)$`).FindAllSubmatch(b, -1) {
		pins[string(m[1])] = string(m[2])
	}
	if len(pins) != 2 {
		t.Fatalf("hack/release.sh pins %v, want ko_pkg= and crane_pkg= lines", pins)
	}
	return pins
}

// TestReleasePinsMatchTestDeps: hack/release.sh installs ko and crane
// itself, at the versions hack/install-test-deps.sh pins for the tests, so
// the release is built with the ko the tests ran.
func TestReleasePinsMatchTestDeps(t *testing.T) {
	b, err := os.ReadFile("../../hack/install-test-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	deps := map[string]string{}
	// "name|module@version|binary"
	for _, m := range regexp.MustCompile(`"[^"|]+\|(\S+@v[^"|]+)\|([^"|]+)"`).FindAllSubmatch(b, -1) {
		deps[string(m[2])] = string(m[1])
	}
	for bin, pin := range releasePins(t) {
		if deps[bin] != pin {
			t.Errorf("hack/release.sh pins %s as %s, hack/install-test-deps.sh as %q", bin, pin, deps[bin])
		}
	}
}

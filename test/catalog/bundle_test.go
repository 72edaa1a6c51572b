package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tkoci "github.com/tektoncd/pipeline/pkg/remote/oci"
	"github.com/tektoncd/pipeline/pkg/resolution/resolver/bundle"
	"sigs.k8s.io/yaml"

	"github.com/stepseal/stepseal/internal/publishtest"
	"github.com/stepseal/stepseal/internal/testregistry"
	"github.com/stepseal/stepseal/pkg/catalog"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/publish"
)

// catalogFiles are the catalog's resources in git:
// <kind>/<name>/<version>/<name>.yaml under task/ and stepaction/.
func catalogFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, root := range []string{"task", "stepaction"} {
		fs, _ := filepath.Glob(filepath.Join("..", "..", root, "*", "*", "*.yaml"))
		for _, f := range fs {
			if filepath.Base(f) == filepath.Base(filepath.Dir(filepath.Dir(f)))+".yaml" {
				out = append(out, f)
			}
		}
	}
	if len(out) < 3 {
		t.Fatalf("catalog files %v", out)
	}
	return out
}

// checkBundle reads the bundle at ref back with Tekton's own code — the
// pkg/remote/oci resolver (List, Get) and the bundles resolver's GetEntry —
// and checks every resource is there by kind and name with its image
// pinned to image; then that the bundle is signed by pub, with stepseal's
// check and with cosign.
func checkBundle(ctx context.Context, t *testing.T, ref string, files []string, image string, fx *publishtest.Fixture) {
	t.Helper()
	res := tkoci.NewResolver(ref, authn.DefaultKeychain)
	listed, err := res.List(ctx)
	if err != nil {
		t.Fatalf("Tekton's resolver List %s: %v", ref, err)
	}
	var got, want []string
	for _, o := range listed {
		got = append(got, o.Kind+"/"+o.Name+"@"+o.APIVersion)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var m struct {
			APIVersion, Kind string
			Metadata         struct{ Name string }
		}
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		want = append(want, strings.ToLower(m.Kind)+"/"+m.Metadata.Name+"@"+strings.TrimPrefix(m.APIVersion, "tekton.dev/"))
	}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bundle lists %v, want %v", got, want)
	}
	for _, w := range want {
		kind, rest, _ := strings.Cut(w, "/")
		name, _, _ := strings.Cut(rest, "@")
		obj, _, err := res.Get(ctx, kind, name)
		if err != nil {
			t.Errorf("Tekton's resolver Get %s/%s: %v", kind, name, err)
			continue
		}
		var images []string
		switch o := obj.(type) {
		case *v1.Task:
			for _, s := range o.Spec.Steps {
				images = append(images, s.Image)
			}
		case *v1beta1.StepAction:
			images = append(images, o.Spec.Image)
		default:
			t.Errorf("%s/%s decoded as %T", kind, name, obj)
		}
		for _, im := range images {
			if im != image {
				t.Errorf("%s/%s: image %q, want %s", kind, name, im, image)
			}
		}
		// What `resolver: bundles` runs.
		e, err := bundle.GetEntry(ctx, authn.DefaultKeychain, bundle.RequestOptions{Bundle: ref, EntryName: name, Kind: kind})
		if err != nil {
			t.Errorf("bundle.GetEntry %s/%s: %v", kind, name, err)
			continue
		}
		if !bytes.Contains(e.Data(), []byte("name: "+name)) || e.RefSource() == nil || e.RefSource().Digest["sha256"] == "" {
			t.Errorf("bundle.GetEntry %s/%s: %s, source %+v", kind, name, e.Data(), e.RefSource())
		}
	}
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Check(ctx, c, r, publish.CheckOptions{Key: fx.Publisher.Public()}); err != nil {
		t.Errorf("bundle signature: %v", err)
	}
	if cosign, err := exec.LookPath("cosign"); err == nil {
		home := t.TempDir()
		cmd := exec.CommandContext(ctx, cosign, "verify", "--key", fx.Path(publishtest.PublicFile), "--insecure-ignore-tlog", "--allow-http-registry", ref)
		cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, ".sigstore"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cosign verify %s: %v\n%s", ref, err, out)
		}
	} else {
		t.Log("cosign not installed (hack/install-test-deps.sh): verified with stepseal only")
	}
}

// TestCatalogBundle is T19 without ko: the catalog in git, its image
// placeholder replaced by a pinned reference, bundled by pkg/catalog,
// pushed and signed to a real registry, and read back by Tekton's own
// resolvers; the same resources give the same digest; what cannot go into
// a bundle is refused.
func TestCatalogBundle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fx := publishtest.New(t)
	host := testregistry.Start(t)
	image := host + "/stepseal@sha256:" + strings.Repeat("5e", 32)
	files := catalogFiles(t)
	var stream []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stream = append(append(stream, "---\n"...), bytes.ReplaceAll(b, []byte(koPlaceholder), []byte(image))...)
	}
	rs, err := catalog.Split(stream)
	if err != nil {
		t.Fatal(err)
	}
	img, err := catalog.Bundle(rs)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := catalog.Bundle(rs)
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("the same resources bundled twice: %s, %s", d1, d2)
	}
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.ParseReference(host + "/stepseal/catalog:test")
	if err != nil {
		t.Fatal(err)
	}
	d, err := catalog.Publish(ctx, c, img, ref, fx.Publisher)
	if err != nil {
		t.Fatal(err)
	}
	checkBundle(ctx, t, d.String(), files, image, fx)
	checkBundle(ctx, t, ref.String(), files, image, fx)

	task := "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: %s}\nspec: {steps: [{name: s, image: %s}]}\n"
	many := ""
	for i := 0; i <= catalog.MaxResources; i++ {
		many += "---\n" + fmt.Sprintf(task, fmt.Sprint("t", i), image)
	}
	for _, c := range []struct{ name, stream, want string }{
		{"unresolved ko image", fmt.Sprintf(task, "t", koPlaceholder), "ko://"},
		{"twice the same", fmt.Sprintf(task, "t", image) + "---\n" + fmt.Sprintf(task, "t", image), "task/t twice"},
		{"not Tekton", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "not a Tekton"},
		{"no name", "apiVersion: tekton.dev/v1\nkind: Task\nspec: {}\n", "no metadata.name"},
		{"more than 20", many, "at most 20"},
		{"empty", "---\n", "no resources"},
	} {
		_, err := catalog.Split([]byte(c.stream))
		if !errors.Is(err, catalog.ErrResource) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrResource saying %q", c.name, err, c.want)
		}
	}
}

// TestReleaseCatalogBundle runs hack/release.sh with CATALOG_KEY (BASE_IMAGE
// =local, against a real registry): ko resolves the catalog (the stepseal
// image built and pushed by digest), the bundle is pushed and signed, and
// Tekton's resolvers read it back with every image pinned to that digest,
// which is in the registry.
func TestReleaseCatalogBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the controller and stepseal images with ko")
	}
	for _, tool := range []string{testregistry.Binary, "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fx := publishtest.New(t)
	host := testregistry.Start(t)
	repo := host + "/stepseal"
	cmd := exec.CommandContext(ctx, "../../hack/release.sh")
	cmd.Env = append(os.Environ(), "KO_DOCKER_REPO="+repo, "BASE_IMAGE=local", "RELEASE_YAML="+filepath.Join(t.TempDir(), "release.yaml"),
		"CATALOG_KEY="+fx.Path(publishtest.KeyFile), "COSIGN_PASSWORD="+publishtest.Password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
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
	ref := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(ref, repo+"/catalog@sha256:") {
		t.Fatalf("stdout %q, want the bundle by digest", ref)
	}
	// The image the resources name: the stepseal image ko pushed.
	c, err := oci.New(oci.WithInsecure(), oci.WithProgress(nil))
	if err != nil {
		t.Fatal(err)
	}
	res := tkoci.NewResolver(ref, authn.DefaultKeychain)
	obj, _, err := res.Get(ctx, "task", "stepseal-publish")
	if err != nil {
		t.Fatal(err)
	}
	image := obj.(*v1.Task).Spec.Steps[0].Image
	if !strings.HasPrefix(image, repo+"/stepseal@sha256:") {
		t.Fatalf("stepseal-publish runs %q, want %s/stepseal@sha256:…", image, repo)
	}
	d, err := c.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(ctx, d); err != nil {
		t.Errorf("the pinned image %s is not in the registry: %v", image, err)
	}
	checkBundle(ctx, t, ref, catalogFiles(t), image, fx)
}

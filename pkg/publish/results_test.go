package publish

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/reject"
)

// TestTaskResults: an image gets IMAGE_URL and IMAGE_DIGEST only; a file
// and a directory also ARTIFACT_OUTPUTS naming their content's digest
// (what a statement about them names: oci.ArtifactDigests).
func TestTaskResults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(file, []byte("bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	fileImg, err := oci.FromFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "a", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirImg, err := oci.FromDir(tree)
	if err != nil {
		t.Fatal(err)
	}
	image, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference("registry.example/demo/app:v1")
	pushed := ref.Context().Digest("sha256:" + strings.Repeat("ab", 32))
	for _, c := range []struct {
		what     string
		img      v1.Image
		artifact bool
	}{{"file", fileImg, true}, {"directory", dirImg, true}, {"image", image, false}} {
		tr, err := TaskResultsOf(c.img, &Result{Ref: ref, Digest: pushed})
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if tr.ImageURL != "registry.example/demo/app:v1" || tr.ImageDigest != pushed.DigestStr() {
			t.Errorf("%s: %+v", c.what, tr)
		}
		byDigest, err := TaskResultsOf(c.img, &Result{Ref: pushed, Digest: pushed})
		if err != nil || byDigest.ImageURL != "registry.example/demo/app" {
			t.Errorf("%s asked for by digest: IMAGE_URL %q (%v), want the repository", c.what, byDigest.ImageURL, err)
		}
		if (tr.Artifact != nil) != c.artifact {
			t.Fatalf("%s: ARTIFACT_OUTPUTS %+v", c.what, tr.Artifact)
		}
		out := t.TempDir()
		files := ResultFiles{ImageURL: filepath.Join(out, "url"), ImageDigest: filepath.Join(out, "digest"), ArtifactOutputs: filepath.Join(out, "outputs")}
		if err := tr.WriteFiles(files); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(files.ArtifactOutputs)
		if !c.artifact {
			if err == nil {
				t.Errorf("%s: ARTIFACT_OUTPUTS written: %s", c.what, b)
			}
			continue
		}
		var ao map[string]string
		if err := json.Unmarshal(b, &ao); err != nil {
			t.Fatal(err)
		}
		ds, _ := oci.ArtifactDigests(c.img)
		want := map[string]string{"uri": "oci://" + pushed.String(), "digest": ds[1].String(), "isBuildArtifact": "true"}
		if len(ao) != 3 || ao["uri"] != want["uri"] || ao["digest"] != want["digest"] || ao["isBuildArtifact"] != "true" {
			t.Errorf("%s: ARTIFACT_OUTPUTS %v, want %v", c.what, ao, want)
		}
	}
}

// FuzzArtifactWithin: whatever the path, ArtifactWithin returns a path
// inside the source directory (symbolic links resolved), or a refusal.
func FuzzArtifactWithin(f *testing.F) {
	for _, s := range []string{"app.txt", "sub/app.txt", "../x", "/etc/passwd", "link", "up/x", "sub/../app.txt", ".", "", "a\x00b", "sub/./../../x"} {
		f.Add(s)
	}
	base := f.TempDir()
	root := filepath.Join(base, "src")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	for _, p := range []string{filepath.Join(root, "app.txt"), filepath.Join(root, "sub", "app.txt"), filepath.Join(base, "x")} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	_ = os.Symlink(filepath.Join(base, "x"), filepath.Join(root, "link"))
	_ = os.Symlink("..", filepath.Join(root, "up"))
	f.Fuzz(func(t *testing.T, rel string) {
		got, err := ArtifactWithin(root, rel)
		if err != nil {
			if errors.Is(err, ErrOutsideSource) && !errors.Is(err, reject.ErrUnauthorized) {
				t.Fatalf("%v is not a reject.ErrUnauthorized", err)
			}
			return
		}
		in, err := filepath.Rel(root, got)
		if err != nil || !(in == "." || filepath.IsLocal(in)) {
			t.Fatalf("ArtifactWithin(%q) = %s, outside %s", rel, got, root)
		}
	})
}

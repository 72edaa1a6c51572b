package realnode

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stepseal/stepseal/internal/testregistry"
)

// TestGoImage builds the Go image on a real registry (a random base image
// standing in for the node's busybox) and checks what a Pod gets: the
// toolchain at GoRoot without the skipped directories, GNU tar and gzip
// with their libraries, the offline build environment. The toolchain and
// tar are run from the extracted image (tar through the image's own
// loader and libraries). A second call finds the image by its inputs and
// returns the same digest without building.
func TestGoImage(t *testing.T) {
	if testing.Short() {
		t.Skip("archives the Go toolchain (~250 MB)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	host := testregistry.Start(t)
	base, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	bref, err := name.ParseReference(host + "/busybox:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(bref, base, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	bd, err := base.Digest()
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{images: map[string]string{"BUSYBOX": host + "/busybox@" + bd.String()}}

	start := time.Now()
	ref := GoImage(ctx, t, n)
	built := time.Since(start)
	if !strings.HasPrefix(ref, host+"/stepseal-go@sha256:") {
		t.Fatalf("GoImage = %s", ref)
	}
	start = time.Now()
	if again := GoImage(ctx, t, n); again != ref {
		t.Errorf("second GoImage = %s, want the cached %s", again, ref)
	}
	t.Logf("built in %.1fs, found again in %.3fs", built.Seconds(), time.Since(start).Seconds())

	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(d, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GOTOOLCHAIN=local", "GOPROXY=off", "GOFLAGS=-mod=mod", "GOCACHE=/tmp/go-cache", "PATH=" + GoRoot + "/bin:/usr/local/bin:/bin:/usr/bin:/sbin:/usr/sbin"} {
		if !slices.Contains(cf.Config.Env, want) {
			t.Errorf("env %v lacks %s", cf.Config.Env, want)
		}
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}

	// The filesystem a container sees.
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode)); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, skipped := range []string{"test", "api", "doc", "misc"} {
		if _, err := os.Stat(filepath.Join(dir, GoRoot, skipped)); err == nil {
			t.Errorf("%s/%s is in the image", GoRoot, skipped)
		}
	}
	gocmd := exec.CommandContext(ctx, filepath.Join(dir, GoRoot, "bin", "go"), "env", "GOROOT", "GOVERSION")
	gocmd.Env = append(os.Environ(), "GOROOT=", "GOTOOLCHAIN=local")
	out, err := gocmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), filepath.Join(dir, GoRoot)+"\n") {
		t.Errorf("the image's go: %v\n%s", err, out)
	}
	loader, _ := filepath.Glob(filepath.Join(dir, "lib64", "ld-linux-*.so*"))
	libs, _ := filepath.Glob(filepath.Join(dir, "*", "*-linux-gnu"))
	libs2, _ := filepath.Glob(filepath.Join(dir, "usr", "lib", "*-linux-gnu"))
	if len(loader) != 1 {
		t.Fatalf("the image's loader: %v", loader)
	}
	for tool, at := range goImageTools {
		files, err := binaryFiles(ctx, tool)
		if err != nil {
			t.Fatal(err)
		}
		for _, lib := range files[1:] {
			if _, err := os.Stat(filepath.Join(dir, lib)); err != nil {
				t.Errorf("%s needs %s, not in the image: %v", tool, lib, err)
			}
		}
		args, want := []string{"--version"}, tool // tar and gzip name themselves
		if tool == "dash" {
			args, want = []string{"-c", "echo dash ran"}, "dash ran"
		}
		cmd := exec.CommandContext(ctx, loader[0], append([]string{"--library-path", strings.Join(append(libs, libs2...), ":"), filepath.Join(dir, at)}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), want) {
			t.Errorf("the image's %s: %v\n%s", tool, err, out)
		}
	}
}

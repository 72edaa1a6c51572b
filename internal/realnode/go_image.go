package realnode

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// goImageVersion is part of the Go image's cache key: bump it when
// GoImage's layout changes.
const goImageVersion = "stepseal-go-image/2"

// GoRoot is where GoImage puts the Go toolchain.
const GoRoot = "/usr/local/go"

// goRootSkip are the directories of GOROOT the image leaves out: not
// needed to build, vet or test a module (the toolchain's own tests, API
// lists, documentation, editor files).
var goRootSkip = map[string]bool{"test": true, "api": true, "doc": true, "misc": true}

// goImageTools are host binaries GoImage copies, with the shared libraries
// they load, and where: GNU tar and gzip (busybox's tar has no --sort,
// --owner or --mtime, which reproducible archives need), and dash as
// /bin/sh, since busybox's sh runs its own applets (its tar) before
// looking at PATH.
var goImageTools = map[string]string{"tar": "/usr/local/bin/tar", "gzip": "/usr/local/bin/gzip", "dash": "/bin/sh"}

// GoImage returns, by digest, a Go toolchain image for the node built
// locally, without Docker or the internet: the node's busybox image
// (images.env BUSYBOX) plus the host's Go toolchain (`go env GOROOT`, as
// GoRoot, without test, api, doc and misc) and the host's GNU tar and gzip
// with their shared libraries, the host's dash as /bin/sh, with an environment for building offline:
// PATH with GoRoot/bin first, GOCACHE and GOPATH under /tmp,
// GOFLAGS=-mod=mod, GOTOOLCHAIN=local, GOPROXY=off, CGO_ENABLED=0.
//
// The image is pushed to the node's registry (registry) under a tag named
// after its inputs (the Go version, busybox's digest, the tools' bytes), and
// a later call with the same inputs reuses it without building it again.
func GoImage(ctx context.Context, t testing.TB, n *Node) string {
	t.Helper()
	busybox := n.Image(t, "BUSYBOX")
	registry, _, _ := strings.Cut(busybox, "/")
	goroot, goversion := goEnv(ctx, t, "GOROOT"), goEnv(ctx, t, "GOVERSION")
	tools := map[string][]string{} // tool → its files (binary, then libraries)
	key := sha256.New()
	// busybox's digest, not its reference: the registry's port changes
	// with every node-up, its store does not.
	_, baseDigest, _ := strings.Cut(busybox, "@")
	fmt.Fprintf(key, "%s\n%s\n%s\n%s\n", goImageVersion, baseDigest, goroot, goversion)
	for _, tool := range slices.Sorted(maps.Keys(goImageTools)) {
		files, err := binaryFiles(ctx, tool)
		if err != nil {
			t.Fatalf("realnode: Go image: %v", err)
		}
		tools[tool] = files
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(key, "%s %x\n", f, sha256.Sum256(b))
		}
	}
	tag, err := name.NewTag(registry + "/stepseal-go:" + hex.EncodeToString(key.Sum(nil))[:20])
	if err != nil {
		t.Fatal(err)
	}
	repo := registry + "/stepseal-go@"
	if desc, err := remote.Head(tag, remote.WithContext(ctx)); err == nil {
		t.Logf("realnode: Go image %s (cached)", tag)
		return repo + desc.Digest.String()
	}

	start := time.Now()
	baseRef, err := name.ParseReference(busybox)
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(baseRef, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("realnode: Go image: base %s: %v", busybox, err)
	}
	goLayer := gzipLayer(t, func(tw *tar.Writer) error { return tarGoRoot(tw, goroot) })
	toolLayer := gzipLayer(t, func(tw *tar.Writer) error { return tarTools(tw, tools) })
	img, err := mutate.AppendLayers(base, goLayer, toolLayer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{
		"PATH=" + GoRoot + "/bin:/usr/local/bin:/bin:/usr/bin:/sbin:/usr/sbin",
		"HOME=/tmp", "GOCACHE=/tmp/go-cache", "GOPATH=/tmp/go", "GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local", "GOPROXY=off", "GOTELEMETRY=off", "CGO_ENABLED=0",
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("realnode: pushing the Go image: %v", err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("realnode: built the Go image %s (%s) in %.1fs", tag, goversion, time.Since(start).Seconds())
	return repo + d.String()
}

// WithDir returns, by digest, image (a reference by digest in the node's
// registry) with one more layer: the regular files under dir, at the
// absolute path at, readable by everyone. It is pushed beside image.
func WithDir(ctx context.Context, t testing.TB, image, dir, at string) string {
	t.Helper()
	ref, err := name.NewDigest(image)
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("realnode: %s: %v", image, err)
	}
	layer := gzipLayer(t, func(tw *tar.Writer) error {
		root := strings.Trim(at, "/")
		if err := tarParents(tw, root+"/x", map[string]bool{}); err != nil {
			return err
		}
		return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			target := path.Join(root, filepath.ToSlash(rel))
			if d.IsDir() {
				return tw.WriteHeader(&tar.Header{Name: target + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return tarFile(tw, p, target, 0o644)
		})
	})
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out, err := name.NewDigest(ref.Context().Name() + "@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(out, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("realnode: pushing %s: %v", out, err)
	}
	return out.String()
}

func goEnv(ctx context.Context, t testing.TB, v string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "go", "env", v).Output()
	if err != nil {
		t.Fatalf("realnode: go env %s: %v", v, err)
	}
	return strings.TrimSpace(string(out))
}

var lddPath = regexp.MustCompile(`(?m)(?:=>\s*)?(/\S+)\s+\(0x`)

// binaryFiles is the path of the host binary tool and of the shared
// libraries it loads (ldd), binary first.
func binaryFiles(ctx context.Context, tool string) ([]string, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		// A static binary: ldd says so and exits non-zero.
		return []string{bin}, nil //nolint:nilerr // no libraries to add
	}
	files := []string{bin}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		files = append(files, m[1])
	}
	return files, nil
}

// gzipLayer writes a layer with fill once, gzip-compressed (fastest level)
// in memory, and returns it: ggcr takes compressed bytes as they are.
func gzipLayer(t testing.TB, fill func(*tar.Writer) error) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	tw := tar.NewWriter(bw)
	if err := fill(tw); err != nil {
		t.Fatalf("realnode: building a layer: %v", err)
	}
	for _, c := range []io.Closer{tw, flusher{bw}, zw} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

type flusher struct{ *bufio.Writer }

func (f flusher) Close() error { return f.Flush() }

// tarGoRoot writes goroot as GoRoot, without goRootSkip's directories.
func tarGoRoot(tw *tar.Writer, goroot string) error {
	root := strings.Trim(GoRoot, "/")
	if err := tarParents(tw, root, map[string]bool{}); err != nil {
		return err
	}
	return filepath.WalkDir(goroot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(goroot, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && goRootSkip[rel] {
			return filepath.SkipDir
		}
		target := path.Join(root, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: target + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Name: target, Typeflag: tar.TypeSymlink, Linkname: link, Mode: 0o777})
		case d.Type().IsRegular():
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return tarFile(tw, p, target, mode)
		}
		return nil
	})
}

// tarTools writes each tool into usr/local/bin and its libraries at their
// own paths.
func tarTools(tw *tar.Writer, tools map[string][]string) error {
	dirs := map[string]bool{}
	names := make([]string, 0, len(tools))
	for tool := range tools {
		names = append(names, tool)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, tool := range names {
		for i, f := range tools[tool] {
			target := strings.TrimPrefix(f, "/")
			mode := int64(0o755)
			if i == 0 {
				target = strings.TrimPrefix(goImageTools[tool], "/")
			}
			if seen[target] {
				continue
			}
			seen[target] = true
			if err := tarParents(tw, target, dirs); err != nil {
				return err
			}
			if err := tarFile(tw, f, target, mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// tarParents writes the directories above target not written yet.
func tarParents(tw *tar.Writer, target string, done map[string]bool) error {
	var parents []string
	for d := path.Dir(target); d != "." && d != "/" && !done[d]; d = path.Dir(d) {
		parents = append(parents, d)
	}
	for i := len(parents) - 1; i >= 0; i-- {
		done[parents[i]] = true
		if err := tw.WriteHeader(&tar.Header{Name: parents[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return err
		}
	}
	return nil
}

// tarFile writes the host file p (symbolic links followed) as target.
func tarFile(tw *tar.Writer, p, target string, mode int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: target, Typeflag: tar.TypeReg, Mode: mode, Size: info.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

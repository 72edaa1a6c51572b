package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestPushPullFile(t *testing.T) {
	ctx := context.Background()
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "app.bin")
			data := writeRandomFile(t, src, 3<<20+17, 1)
			img, err := FromFile(src)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Push(ctx, img, mustRef(t, tg.host+"/demo/file:v1"), testOpts...)
			if err != nil {
				t.Fatal(err)
			}
			m := manifestOf(t, d)
			if m.Layers[0].Digest.String() != sha(data) || m.Layers[0].Annotations[AnnotationTitle] != "app.bin" {
				t.Fatalf("layer %+v: want digest %s (the file's sha256) and title app.bin", m.Layers[0], sha(data))
			}
			if m.Config.MediaType != ConfigTypeFile {
				t.Fatalf("config media type %s", m.Config.MediaType)
			}
			raw, _ := img.RawManifest()
			if !strings.Contains(string(raw), `"artifactType":"`+ArtifactTypeFile+`"`) {
				t.Fatalf("manifest lacks artifactType: %s", raw)
			}
			out := filepath.Join(dir, "out.bin")
			if err := PullFile(ctx, d, out, testOpts...); err != nil {
				t.Fatal(err)
			}
			equalFiles(t, src, out)
		})
	}
}

func makeTree(t *testing.T, root string) {
	t.Helper()
	for p, c := range map[string]string{"a.txt": "alpha", "sub/b.txt": "beta", "sub/deeper/c": strings.Repeat("c", 100000), "empty": ""} {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/b.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
}

// treeOf describes a tree: path -> type, mode and content (or link target).
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, _ := d.Info()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link " + l
		case info.IsDir():
			out[rel] = "dir " + info.Mode().Perm().String()
		default:
			b, _ := os.ReadFile(p)
			out[rel] = info.Mode().Perm().String() + " " + sha(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(out, ".")
	return out
}

func TestDirDigestIsReproducible(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	makeTree(t, a)
	makeTree(t, b)
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(b, "a.txt"), old, old); err != nil {
		t.Fatal(err)
	}
	ia, err := FromDir(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := FromDir(b)
	if err != nil {
		t.Fatal(err)
	}
	la, _ := ia.Layers()
	lb, _ := ib.Layers()
	da, _ := la[0].Digest()
	db, _ := lb[0].Digest()
	if da != db {
		t.Fatalf("same tree, different layer digests %s %s", da, db)
	}
	// The tar is what we say it is: sorted, zeroed times and owners.
	var buf bytes.Buffer
	if err := WriteTar(&buf, a); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Fatalf("%s: not normalised: %+v", h.Name, h)
		}
		names = append(names, h.Name)
	}
	want := "a.txt empty emptydir/ link run.sh sub/ sub/b.txt sub/deeper/ sub/deeper/c"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("tar entries %q, want %q", got, want)
	}
	// A changed byte changes the digest.
	if err := os.WriteFile(filepath.Join(b, "a.txt"), []byte("alphA"), 0o644); err != nil {
		t.Fatal(err)
	}
	ib, _ = FromDir(b)
	lb, _ = ib.Layers()
	if db, _ = lb[0].Digest(); db == da {
		t.Fatal("changed tree kept its digest")
	}
}

func TestPushPullDir(t *testing.T) {
	ctx := context.Background()
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "tree")
			makeTree(t, src)
			img, err := FromDir(src)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Push(ctx, img, mustRef(t, tg.host+"/demo/dir:v1"), testOpts...)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			if err := PullDir(ctx, d, out, testOpts...); err != nil {
				t.Fatal(err)
			}
			if got, want := treeOf(t, out), treeOf(t, src); !equalMaps(got, want) {
				t.Fatalf("pulled tree\n%v\nwant\n%v", got, want)
			}
			if err := PullDir(ctx, d, out, testOpts...); err == nil {
				t.Fatal("PullDir over an existing directory succeeded")
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// blobsOf returns every blob of an image: manifest, config, layers.
func blobsOf(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	out["manifest"] = raw
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	out["config"] = cfg
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[d.String()] = b
	}
	return out
}

func sameBlobs(t *testing.T, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d blobs vs %d", len(a), len(b))
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			t.Fatalf("blob %s differs", k)
		}
	}
}

func TestPushLayoutAndTarballs(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	docker := filepath.Join(dir, "docker.tar")
	if err := tarball.WriteToFile(docker, name.MustParseReference("example.com/x:1"), img); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "oci.tar")
	tarDir(t, lay, ociTar)
	want := blobsOf(t, img)
	wantDigest, _ := img.Digest()

	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			for _, c := range []struct{ kind, path string }{{"layout", lay}, {"oci-archive", ociTar}, {"docker-archive", docker}} {
				src, err := Open(c.path)
				if err != nil {
					t.Fatalf("%s: %v", c.kind, err)
				}
				d, err := Push(ctx, src, mustRef(t, tg.host+"/demo/"+c.kind+":v1"), testOpts...)
				if err != nil {
					t.Fatalf("%s: %v", c.kind, err)
				}
				pulled, err := Pull(ctx, d, testOpts...)
				if err != nil {
					t.Fatal(err)
				}
				got := blobsOf(t, pulled)
				if c.kind == "docker-archive" {
					// A docker archive has no manifest of its own to keep:
					// compare with what we read from it.
					sameBlobs(t, got, blobsOf(t, src.(v1.Image)))
					continue
				}
				if d.DigestStr() != wantDigest.String() {
					t.Fatalf("%s: pushed %s, layout holds %s", c.kind, d.DigestStr(), wantDigest)
				}
				sameBlobs(t, got, want)
				out := filepath.Join(t.TempDir(), "pulled")
				if _, err := PullLayout(ctx, d, out, testOpts...); err != nil {
					t.Fatal(err)
				}
				back, err := FromLayout(out)
				if err != nil {
					t.Fatal(err)
				}
				sameBlobs(t, blobsOf(t, back.(v1.Image)), want)
			}
		})
	}
}

// tarDir archives a directory (an OCI layout) as a tar file.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteTar(f, dir); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDetectsKind(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.txt")
	writeRandomFile(t, plain, 100, 2)
	src, err := Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := src.RawManifest(); !strings.Contains(string(raw), ArtifactTypeFile) {
		t.Fatalf("plain file not a file artifact: %s", raw)
	}
	tree := filepath.Join(dir, "tree")
	makeTree(t, tree)
	src, err = Open(tree)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := src.RawManifest(); !strings.Contains(string(raw), ArtifactTypeDir) {
		t.Fatalf("directory not a dir artifact: %s", raw)
	}
	// A tar that is not an image is a file.
	other := filepath.Join(dir, "other.tar")
	tarDir(t, tree, other)
	src, err = Open(other)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := src.RawManifest(); !strings.Contains(string(raw), ArtifactTypeFile) {
		t.Fatalf("non-image tar not a file artifact: %s", raw)
	}
	if _, err := FromTarball(other); !errors.Is(err, ErrArtifact) {
		t.Fatalf("FromTarball of a non-image tar: %v, want ErrArtifact", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		ref  string
		opts []Option
		want error
		msg  string
	}{
		{"127.0.0.1:5000/demo/app", testOpts, ErrReference, "neither tag nor digest"},
		{"demo/app:v1", nil, ErrReference, ""},
		{"127.0.0.1:5000/demo/app@sha256:abc", testOpts, ErrReference, ""},
		{"registry.example.com/demo/app:v1", testOpts, ErrInsecure, "registry.example.com"},
		{"10.1.2.3:5000/demo/app:v1", testOpts, ErrInsecure, "10.1.2.3:5000"},
	} {
		_, err := ParseReference(c.ref, c.opts...)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseReference(%q) = %v, want %v mentioning %q on one line", c.ref, err, c.want, c.msg)
		}
	}
	for _, h := range []string{"127.0.0.1:5000", "127.3.4.5", "localhost:80", "[::1]:5000", "::1"} {
		if !IsLoopback(h) {
			t.Errorf("IsLoopback(%q) = false", h)
		}
	}
	for _, h := range []string{"10.0.0.1:5000", "localhost.example.com", "128.0.0.1", "[::2]:1"} {
		if IsLoopback(h) {
			t.Errorf("IsLoopback(%q) = true", h)
		}
	}
	if _, err := ParseDigest("127.0.0.1:5000/demo/app:v1", testOpts...); !errors.Is(err, ErrReference) {
		t.Errorf("ParseDigest of a tag: %v", err)
	}

	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Unreachable registry: a port nobody listens on.
	s := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(s.URL, "http://")
	s.Close()
	_, err = Push(ctx, img, mustRef(t, host+"/demo/app:v1"), testOpts...)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), host) || strings.Contains(err.Error(), "\n") {
		t.Errorf("push to a closed port: %v, want one-line ErrUnreachable naming %s", err, host)
	}

	// Wrong credentials.
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "right" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer auth.Close()
	ahost := strings.TrimPrefix(auth.URL, "http://")
	_, err = Push(ctx, img, mustRef(t, ahost+"/demo/app:v1"), append(testOpts, WithAuth(&authn.Basic{Username: "alice", Password: "wrong"}))...)
	if !errors.Is(err, ErrRegistryAuth) || !strings.Contains(err.Error(), ahost) || strings.Contains(err.Error(), "\n") {
		t.Errorf("push with wrong password: %v, want one-line ErrRegistryAuth naming %s", err, ahost)
	}
	if _, err := Push(ctx, img, mustRef(t, ahost+"/demo/app:v1"), append(testOpts, WithAuth(&authn.Basic{Username: "alice", Password: "right"}))...); err != nil {
		t.Errorf("push with the right password: %v", err)
	}

	// Plain HTTP without the insecure option is refused (upgraded to TLS).
	tg := inProcess(t)
	ref, err := ParseReference(tg.host + "/demo/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, img, ref, WithProgress(nil)); err == nil || !strings.Contains(err.Error(), tg.host) {
		t.Errorf("plain-HTTP push without insecure: %v, want a refusal naming %s", err, tg.host)
	}
	// A digest reference must match what is pushed.
	other := ref.Context().Digest("sha256:" + strings.Repeat("0", 64))
	if _, err := Push(ctx, img, other, testOpts...); !errors.Is(err, ErrReference) {
		t.Errorf("push to a mismatching digest: %v", err)
	}
}

func TestTamperedLayerDetected(t *testing.T) {
	ctx := context.Background()
	tg := distribution(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "payload.bin")
	data := writeRandomFile(t, src, 1<<20, 3)
	img, err := FromFile(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Push(ctx, img, mustRef(t, tg.host+"/demo/tamper:v1"), testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker owns the registry's storage: flip one byte of the blob.
	blob := tg.srv.BlobPath(sha(data))
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.bin")
	err = PullFile(ctx, d, out, testOpts...)
	if !errors.Is(err, ErrBlobDigest) || !strings.Contains(err.Error(), sha(data)) {
		t.Fatalf("pull of tampered blob: %v, want ErrBlobDigest naming %s", err, sha(data))
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("tampered content left at %s", out)
	}
	// The same for a directory artifact.
	tree := filepath.Join(dir, "tree")
	makeTree(t, tree)
	dimg, _ := FromDir(tree)
	dd, err := Push(ctx, dimg, mustRef(t, tg.host+"/demo/tamperdir:v1"), testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := dimg.Layers()
	ld, _ := ls[0].Digest()
	blob = tg.srv.BlobPath(ld.String())
	b, _ = os.ReadFile(blob)
	b[len(b)-2000] ^= 0x01 // inside the tar padding after the last file: the tar still parses
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := PullDir(ctx, dd, filepath.Join(dir, "outdir"), testOpts...); !errors.Is(err, ErrBlobDigest) {
		t.Fatalf("pull of tampered dir: %v, want ErrBlobDigest", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "outdir")); !os.IsNotExist(err) {
		t.Fatal("tampered directory left behind")
	}
}

func TestProgressReported(t *testing.T) {
	tg := inProcess(t)
	src := filepath.Join(t.TempDir(), "f")
	writeRandomFile(t, src, 2<<20, 4)
	img, err := FromFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Push(context.Background(), img, mustRef(t, tg.host+"/demo/progress:v1"), WithInsecure(), WithProgress(&buf)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "demo/progress:v1: ") || !strings.Contains(out, "(100%)") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("progress output %q", out)
	}
}

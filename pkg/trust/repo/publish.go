package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
)

// Publish copies the repository's metadata to dst/metadata/ in the order a
// client reading at any moment needs: every root version, then the role
// files, then the snapshots, then timestamp.json last; each file by atomic
// rename. Versioned files are immutable: one already published with other
// content is refused (ErrPublished) before anything is copied. Unchanged
// files are skipped. The target files the repository hosts (TargetsDir)
// that the current metadata lists are copied to dst/targets/ before any
// metadata. It returns the names written, relative to dst.
func (r *Repo) Publish(ctx context.Context, dst string) ([]string, error) {
	if strings.HasPrefix(dst, trust.OCIScheme) {
		return nil, fmt.Errorf("%s: publish to a registry with PublishOCI", dst)
	}
	src := filepath.Join(r.dir, MetadataDir)
	names, err := r.metadataFiles()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dst, MetadataDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	var todo []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return nil, err
		}
		old, err := os.ReadFile(filepath.Join(out, n))
		switch {
		case err == nil && bytes.Equal(old, b):
			continue
		case err == nil && n != "timestamp.json":
			return nil, &Error{Kind: ErrPublished, Path: filepath.Join(out, n), Detail: "a published version is never rewritten"}
		case err == nil:
			if err := notBehind(old, b); err != nil {
				return nil, err
			}
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
		data[n] = b
		todo = append(todo, n)
	}
	// Target files first: a client that sees the new metadata finds them.
	targets, err := r.publishTargets(dst)
	if err != nil {
		return nil, err
	}
	for _, n := range todo {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := signing.WriteFileAtomic(filepath.Join(out, n), data[n], 0o644); err != nil {
			return nil, err
		}
	}
	written := targets
	for _, n := range todo {
		written = append(written, path.Join(MetadataDir, n))
	}
	return written, nil
}

// metadataFiles are the repository's metadata file names in the order a
// reader needs them: roots, role files, snapshots, timestamp.json.
func (r *Repo) metadataFiles() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.dir, MetadataDir))
	if err != nil {
		return nil, err
	}
	type file struct {
		name    string
		rank    int
		version int64
	}
	var files []file
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") {
			continue
		}
		if n == "timestamp.json" {
			files = append(files, file{n, 3, 0})
			continue
		}
		v, rest, ok := strings.Cut(n, ".")
		ver, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			continue
		}
		rank := 1
		switch rest {
		case "root.json":
			rank = 0
		case "snapshot.json":
			rank = 2
		}
		files = append(files, file{n, rank, ver})
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].rank != files[j].rank {
			return files[i].rank < files[j].rank
		}
		if files[i].version != files[j].version {
			return files[i].version < files[j].version
		}
		return files[i].name < files[j].name
	})
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return names, nil
}

// PublishOCI publishes the repository to an OCI repository
// (oci://<registry>/<repository>, the form clients take as their source):
// each hosted target file still listed as a one-layer artifact tagged
// target.<sha256>, then each metadata file tagged with its name, in the
// order Publish writes them (timestamp.json last). A versioned tag that
// already holds other content is ErrPublished, checked for every file
// before anything is pushed; unchanged tags are skipped. It returns the
// tags pushed.
func (r *Repo) PublishOCI(ctx context.Context, c *oci.Client, dst string) ([]string, error) {
	repoRef := strings.TrimSuffix(strings.TrimPrefix(dst, trust.OCIScheme), "/")
	type item struct {
		tag  name.Tag
		data []byte
		img  v1.Image
	}
	var items []item
	add := func(tag string, data []byte) error {
		t, err := name.NewTag(repoRef+":"+tag, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("%s: %w", dst, err)
		}
		img, err := oci.BytesArtifact(data, trust.ArtifactType, trust.LayerType, tag)
		if err != nil {
			return err
		}
		items = append(items, item{t, data, img})
		return nil
	}
	for _, f := range r.hostedTargets() {
		data, err := os.ReadFile(f.file)
		if err != nil {
			return nil, err
		}
		if err := add(trust.TargetTag(f.sha), data); err != nil {
			return nil, err
		}
	}
	names, err := r.metadataFiles()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(r.dir, MetadataDir, n))
		if err != nil {
			return nil, err
		}
		if err := add(n, data); err != nil {
			return nil, err
		}
	}
	var todo []item
	for _, it := range items {
		want, err := it.img.Digest()
		if err != nil {
			return nil, err
		}
		have, err := c.Resolve(ctx, it.tag)
		switch {
		case err == nil && have.DigestStr() == want.String():
			continue
		case err == nil && it.tag.TagStr() != "timestamp.json":
			return nil, &Error{Kind: ErrPublished, Path: it.tag.String(), Detail: "a published version is never rewritten"}
		case err == nil:
			old, _, err := c.FetchBytes(ctx, it.tag, 8<<20)
			if err != nil {
				return nil, err
			}
			if err := notBehind(old, it.data); err != nil {
				return nil, err
			}
		case err != nil && !errors.Is(err, oci.ErrNotFound):
			return nil, err
		}
		todo = append(todo, it)
	}
	var pushed []string
	for _, it := range todo {
		if _, err := c.Push(ctx, it.img, it.tag); err != nil {
			return pushed, err
		}
		pushed = append(pushed, it.tag.TagStr())
	}
	return pushed, nil
}

// ErrRemoteListen: Serve was asked to listen beyond loopback without
// AllowRemote.
var ErrRemoteListen = errors.New("refusing to listen on a non-loopback address without allowing it")

// CheckListenAddr refuses an address that is not loopback (127.0.0.0/8, ::1,
// localhost) unless allowRemote: a TUF repository is public data, but serving
// it to the network should be a decision.
func CheckListenAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRemoteListen, addr)
}

// Handler serves a published tree (dst of Publish) read-only, without
// directory listings: clients use <base>/metadata as their metadata URL.
func Handler(dir string) http.Handler {
	fs := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasSuffix(req.URL.Path, "/") {
			http.NotFound(w, req)
			return
		}
		fs.ServeHTTP(w, req)
	})
}

// Serve serves dir on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, dir string) error {
	srv := &http.Server{Handler: Handler(dir), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// notBehind refuses to replace a published timestamp by one whose version
// is not higher (clients would refuse it as a rollback): the online
// re-signer (Resign) published after this repository's last accept. Follow
// the destination, accept again, then publish.
func notBehind(published, ours []byte) error {
	hp, err := parseStrict(published, false)
	if err != nil {
		return nil // a damaged published timestamp is replaced
	}
	ho, err := parseStrict(ours, false)
	if err != nil {
		return err
	}
	if hp.Version >= ho.Version {
		return &Error{Kind: ErrStale, Role: RoleTimestamp, Version: ho.Version,
			Detail: fmt.Sprintf("the published timestamp is v%d (re-signed online since this repository's last accept): run accept with the destination to follow (--published), then publish", hp.Version)}
	}
	return nil
}

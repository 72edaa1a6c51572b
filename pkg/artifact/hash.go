package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/run"
)

// Errors callers branch on with errors.Is; each also matches its reason in
// stepseal's shared vocabulary (pkg/reject). A file that cannot be read is
// returned as the os error it is.
var (
	// ErrSymlinkEscape: a symlink under the root points outside it (an absolute
	// target, or one that climbs above the root with ".."). Nothing outside
	// the root is ever read: refused on purpose (reject.ErrUnsupported).
	ErrSymlinkEscape = reject.Sentinel(reject.ErrUnsupported, "symlink escapes the artifact root")
	// ErrSymlinkCycle: a followed symlinked directory leads back into one of
	// its own ancestors: the tree has no finite list of artifacts
	// (reject.ErrMalformed).
	ErrSymlinkCycle = reject.Sentinel(reject.ErrMalformed, "symlink cycle")
)

// Options tune a hash run. The zero value matches `in-toto run` without flags.
type Options struct {
	// Exclude holds gitignore-style patterns with in-toto-run's --exclude
	// semantics (the same library, github.com/shibumi/go-pathspec). Each
	// pattern is matched against the artifact URI, which is exactly the path
	// in-toto-run matches: a pattern without a slash matches a name at any
	// depth ("*.log"), "dir/" matches everything below a directory named dir,
	// "!pattern" re-includes. As in in-toto-run, a pattern matching only a
	// directory's own name ("node_modules") does not exclude the files in it;
	// write "node_modules/" for that. Also as in-toto-run, a symlink is
	// excluded when its target's path matches, "[!a]" matches "a" (the
	// library drops bracket negation), and the first matching "!" pattern
	// wins. An empty pattern or one ending in "[" is an error (the library
	// panics on them).
	Exclude []string
	// FollowSymlinkDirs records the files under a symlinked directory at the
	// link's path, like in-toto-run's --follow-symlink-dirs. By default
	// symlinked directories are skipped, as in-toto-run does.
	FollowSymlinkDirs bool
	// Workers bounds how many files are hashed at once; 0 means GOMAXPROCS.
	Workers int
}

// bufSize is each worker's read buffer. Large enough that syscall overhead
// vanishes next to SHA-256, small enough that memory stays flat.
const bufSize = 256 << 10

// Hash records every regular file under the directory root. A file's URI is
// prefix + "/" + its slash-separated path relative to root (just the relative
// path when prefix is empty). A symlink resolving to a regular file inside
// root is recorded at the link's path with its target's digest; a symlink
// that escapes root is an error naming the link (ErrSymlinkEscape), as is a
// dangling one. Symlinked directories are skipped unless
// opts.FollowSymlinkDirs; sockets, FIFOs and devices are skipped unread.
func Hash(ctx context.Context, root, prefix string, opts Options) (run.Artifacts, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	defer r.Close()
	fi, err := r.Stat(".")
	if err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	m, err := newMatcher(opts.Exclude)
	if err != nil {
		return nil, err
	}
	w := &walker{root: r, prefix: strings.TrimSuffix(filepath.ToSlash(prefix), "/"), opts: opts, exclude: m, rootName: prefix}
	if prefix == "" {
		w.rootName = root
	}
	if err := w.dir(ctx, ".", w.prefix, []fs.FileInfo{fi}); err != nil {
		return nil, err
	}
	return hashAll(ctx, r, w.jobs, opts.Workers)
}

// HashPaths records the given files and directories the way in-toto-golang's
// `in-toto run --materials/--products PATH...` (RecordArtifacts) names them,
// so a link made here and one made by in-toto-run for the same paths agree:
//
//   - a file is recorded under the path exactly as given ("./a.txt" stays
//     "./a.txt");
//   - a file inside a directory PATH is recorded as filepath.Join(PATH, rel)
//     in slash form: "src/" gives "src/main.go", "." gives "main.go",
//     "../x" gives "../x/f", an absolute PATH gives absolute URIs;
//   - exclude patterns are matched against those names.
//
// Differences, all fail-closed: a symlink leaving PATH is an error instead of
// being followed; a PATH that is itself a symlink to a directory is walked
// (in-toto-run records nothing for it without --follow-symlink-dirs); files
// under a followed symlinked directory are matched against exclude patterns
// by their link path (in-toto-run uses the target path). Overlapping paths
// ("." and "src") are accepted, the shared files getting the same name and
// digest either way; in-toto-run refuses them as duplicate keys. Line-ending
// normalisation and --lstrip-paths are not offered.
func HashPaths(ctx context.Context, paths []string, opts Options) (run.Artifacts, error) {
	out := run.Artifacts{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("artifact: %w", err)
		}
		var a run.Artifacts
		switch {
		case fi.IsDir():
			prefix := filepath.ToSlash(filepath.Clean(p))
			if prefix == "." {
				prefix = ""
			}
			a, err = Hash(ctx, p, prefix, opts)
		case fi.Mode().IsRegular():
			a, err = hashFile(ctx, p, filepath.ToSlash(p), opts)
		default:
			continue // sockets, FIFOs, devices: never opened
		}
		if err != nil {
			return nil, err
		}
		for k, v := range a {
			out[k] = v
		}
	}
	return out, nil
}

func hashFile(ctx context.Context, p, uri string, opts Options) (run.Artifacts, error) {
	m, err := newMatcher(opts.Exclude)
	if err != nil {
		return nil, err
	}
	if m.excluded(uri) {
		return run.Artifacts{}, nil
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", uri, err)
	}
	defer f.Close()
	d, err := digest(ctx, f, sha256.New(), make([]byte, bufSize))
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", uri, err)
	}
	return run.Artifacts{uri: run.DigestSet{"sha256": d}}, nil
}

type job struct {
	rel  string // path under the root, opened through os.Root
	uri  string
	size int64
}

type walker struct {
	root     *os.Root
	prefix   string
	rootName string
	opts     Options
	exclude  matcher
	jobs     []job
}

func (w *walker) uri(rel string) string {
	if w.prefix == "" {
		return rel
	}
	return w.prefix + "/" + rel
}

// dir lists one directory. match is the directory's name for exclude
// patterns: its URI, except under a followed symlinked directory, where
// in-toto-run matches the target's path. ancestors are the directories on the
// way down, for cycle detection when symlinked directories are followed.
func (w *walker) dir(ctx context.Context, rel, match string, ancestors []fs.FileInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := w.root.Open(rel)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", w.uri(rel), err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("artifact %s: %w", w.uri(rel), err)
	}
	for _, e := range entries {
		child := e.Name()
		if rel != "." {
			child = rel + "/" + e.Name()
		}
		uri := w.uri(child)
		m := match + "/" + e.Name()
		if match == "" {
			m = e.Name()
		}
		t := e.Type()
		if t.IsDir() {
			fi, err := e.Info()
			if err != nil {
				return fmt.Errorf("artifact %s: %w", uri, err)
			}
			if err := w.dir(ctx, child, m, append(ancestors, fi)); err != nil {
				return err
			}
			continue
		}
		if t&(fs.ModeSymlink) == 0 && !t.IsRegular() {
			continue // socket, FIFO, device: skipped, never opened
		}
		if w.exclude.excluded(m) {
			continue
		}
		if t.IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return fmt.Errorf("artifact %s: %w", uri, err)
			}
			w.jobs = append(w.jobs, job{rel: child, uri: uri, size: fi.Size()})
			continue
		}
		if err := w.symlink(ctx, child, uri, ancestors); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) symlink(ctx context.Context, rel, uri string, ancestors []fs.FileInfo) error {
	target, err := w.root.Readlink(rel)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", uri, err)
	}
	if filepath.IsAbs(target) || !fs.ValidPath(path.Join(path.Dir(rel), filepath.ToSlash(target))) {
		return w.escape(uri, target)
	}
	// os.Root resolves the whole chain and refuses any hop outside the root.
	fi, err := w.root.Stat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("artifact %s: dangling symlink (-> %s)", uri, target)
	case err != nil && strings.Contains(err.Error(), "escapes"):
		return w.escape(uri, target) // a later hop of the chain leaves the root
	case err != nil:
		return fmt.Errorf("artifact %s: %w", uri, err)
	}
	if !fi.Mode().IsRegular() && !(fi.IsDir() && w.opts.FollowSymlinkDirs) {
		return nil // a directory not followed, or a special file: skipped unread
	}
	// in-toto-run matches exclude patterns against the link's path (done by
	// the caller) and again against its resolved target's path.
	resolved, err := w.resolve(rel)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", uri, err)
	}
	m := w.uri(resolved)
	if resolved == "." {
		m = w.prefix
	}
	if w.exclude.excluded(m) {
		return nil
	}
	if fi.Mode().IsRegular() {
		w.jobs = append(w.jobs, job{rel: rel, uri: uri, size: fi.Size()})
		return nil
	}
	for _, a := range ancestors {
		if os.SameFile(a, fi) {
			return fmt.Errorf("artifact %s: %w", uri, ErrSymlinkCycle)
		}
	}
	return w.dir(ctx, rel, m, append(ancestors, fi))
}

// resolve returns the slash path, relative to the root, that rel names once
// every symlink in it is resolved. Only links are read (never file data), and
// the caller has already checked through os.Root that the chain stays inside.
func (w *walker) resolve(rel string) (string, error) {
	const maxHops = 255
	todo := strings.Split(rel, "/")
	var done []string
	for hops := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", ErrSymlinkEscape
			}
			done = done[:len(done)-1]
			continue
		}
		cur := strings.Join(append(done, name), "/")
		fi, err := w.root.Lstat(cur)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, name)
			continue
		}
		if hops++; hops > maxHops {
			return "", ErrSymlinkCycle
		}
		target, err := w.root.Readlink(cur)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			return "", ErrSymlinkEscape
		}
		todo = append(strings.Split(filepath.ToSlash(target), "/"), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return strings.Join(done, "/"), nil
}

func (w *walker) escape(uri, target string) error {
	return fmt.Errorf("artifact: symlink %s -> %s: %w %s", uri, target, ErrSymlinkEscape, w.rootName)
}

// hashAll hashes the jobs with a bounded pool, largest files first so one big
// file started last cannot leave the other workers idle.
func hashAll(ctx context.Context, r *os.Root, jobs []job, workers int) (run.Artifacts, error) {
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].size > jobs[j].size })
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(jobs))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	digests := make([]string, len(jobs))
	fast := newFastOpener(r)
	defer fast.close()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, bufSize)
			h := sha256.New()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				d, ok, err := fast.hash(ctx, jobs[i], h, buf)
				if !ok {
					d, err = hashJob(ctx, r, jobs[i], h, buf)
				}
				if err != nil {
					cancel(err)
					return
				}
				digests[i] = d
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	out := make(run.Artifacts, len(jobs))
	for i, j := range jobs {
		out[j.uri] = run.DigestSet{"sha256": digests[i]}
	}
	return out, nil
}

func hashJob(ctx context.Context, r *os.Root, j job, h hashWriter, buf []byte) (string, error) {
	// O_NONBLOCK: if the file was swapped for a FIFO since the walk, opening
	// it must not block; the type check below then refuses it unread.
	f, err := r.OpenFile(j.rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if strings.Contains(err.Error(), "escapes") {
			err = ErrSymlinkEscape
		}
		return "", fmt.Errorf("artifact %s: %w", j.uri, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w", j.uri, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("artifact %s: changed from a regular file to %v while hashing", j.uri, fi.Mode().Type())
	}
	h.Reset()
	d, err := digest(ctx, f, h, buf)
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w", j.uri, err)
	}
	return d, nil
}

type hashWriter interface {
	io.Writer
	Reset()
	Sum([]byte) []byte
}

// digest streams f through h in buf-sized reads.
func digest(ctx context.Context, f *os.File, h hashWriter, buf []byte) (string, error) {
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
	return sum(h), nil
}

func sum(h hashWriter) string {
	var b [sha256.Size]byte
	return hex.EncodeToString(h.Sum(b[:0]))
}

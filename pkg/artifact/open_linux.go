package artifact

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fastOpener hashes files through raw openat2(2) with RESOLVE_BENEATH from
// the root's descriptor: one syscall per open, the kernel refusing any path
// (or symlink) that leaves the root, no *os.File (whose open also registers
// with the poller). os.Root walks the path one openat per component instead;
// it is the fallback where openat2 is missing (Linux < 5.6, some seccomp
// profiles).
type fastOpener struct {
	dir      *os.File // the root, opened through os.Root
	disabled atomic.Bool
}

func newFastOpener(r *os.Root) *fastOpener {
	d, err := r.Open(".")
	if err != nil {
		return nil
	}
	return &fastOpener{dir: d}
}

func (o *fastOpener) close() {
	if o != nil {
		o.dir.Close()
	}
}

// hash digests j into h. ok is false when openat2 is unavailable and the
// caller must fall back to os.Root.
func (o *fastOpener) hash(ctx context.Context, j job, h hashWriter, buf []byte) (d string, ok bool, err error) {
	if o == nil || o.disabled.Load() {
		return "", false, nil
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	var fd int
	for {
		fd, err = unix.Openat2(int(o.dir.Fd()), j.rel, &how)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
		// No openat2 here (old kernel, or a seccomp profile denying it:
		// read-only opens of files do not otherwise fail with EPERM).
		o.disabled.Store(true)
		return "", false, nil
	case errors.Is(err, unix.EXDEV):
		return "", true, fmt.Errorf("artifact %s: %w", j.uri, ErrSymlinkEscape)
	case err != nil:
		return "", true, fmt.Errorf("artifact %s: open: %w", j.uri, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", true, fmt.Errorf("artifact %s: %w", j.uri, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", true, fmt.Errorf("artifact %s: changed from a regular file to mode %#o while hashing", j.uri, st.Mode&unix.S_IFMT)
	}
	h.Reset()
	var total int64
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", true, fmt.Errorf("artifact %s: read: %w", j.uri, err)
		}
		h.Write(buf[:n])
		total += int64(n)
		// A short read having reached the size fstat reported is the end of
		// a regular file; this saves the read that would return 0.
		if n == 0 || n < len(buf) && total >= st.Size {
			break
		}
		if err := ctx.Err(); err != nil {
			return "", true, err
		}
	}
	return sum(h), true, nil
}

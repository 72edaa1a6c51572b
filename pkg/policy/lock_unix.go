//go:build unix

package policy

import (
	"os"
	"syscall"
)

// lockFile blocks until it holds an exclusive lock on f (released when f is
// closed); flock locks open files, so goroutines of one process exclude each
// other as processes do.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

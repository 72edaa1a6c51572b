//go:build unix

package repo

import (
	"os"
	"syscall"
)

// lockFile blocks until it holds an exclusive lock on f (released when f is
// closed).
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

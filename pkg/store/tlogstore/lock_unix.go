//go:build unix

package tlogstore

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on path for as long as the returned file
// is open: one Store per directory, across processes and within one.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another store: %w", path, err)
	}
	return f, nil
}

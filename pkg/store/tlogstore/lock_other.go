//go:build !unix

package tlogstore

import "os"

// lockDir only creates the lock file where flock is not available.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

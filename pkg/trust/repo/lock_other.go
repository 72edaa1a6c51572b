//go:build !unix

package repo

import (
	"errors"
	"os"
)

// lockFile fails where flock is not available: without a lock, two
// publishers could both sign the same snapshot version.
func lockFile(*os.File) error {
	return errors.New("file locking is not supported on this platform")
}

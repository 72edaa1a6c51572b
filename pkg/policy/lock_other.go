//go:build !unix

package policy

import (
	"errors"
	"os"
)

// lockFile fails where flock is not available: without a lock, concurrent
// writers could lose a recorded version.
func lockFile(*os.File) error {
	return errors.New("file locking is not supported on this platform")
}

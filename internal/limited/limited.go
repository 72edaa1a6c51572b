package limited

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge: a file is larger than the bound its reader sets.
var ErrTooLarge = errors.New("file too large")

// ReadFile returns the content of the file at path, at most max bytes. An
// unreadable file is the os error (naming path); a larger one is ErrTooLarge,
// with a message naming path and max.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, max, ErrTooLarge)
	}
	return data, nil
}

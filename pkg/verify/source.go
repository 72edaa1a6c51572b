package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/stepseal/stepseal/pkg/seal"
)

// MaxFileSize caps the size of a layout or link file (64 MiB): larger files
// are rejected as malformed rather than read into memory.
const MaxFileSize = 64 << 20

// LinkSource provides the link files a verification reads. File names
// follow in-toto's convention "<step>.<keyid[:8]>.link"; names that do not
// end in ".link" are ignored, as in-toto-golang ignores them.
type LinkSource interface {
	// LinkNames lists the link files the source holds.
	LinkNames(ctx context.Context) ([]string, error)
	// ReadLink returns the content of one of them; content over MaxFileSize
	// is an error.
	ReadLink(ctx context.Context, name string) ([]byte, error)
}

// ownedSource is implemented by sources whose ReadLink returns a fresh
// buffer that nothing else holds, which the engine may then parse without
// copying.
type ownedSource interface{ freshBuffers() }

func (Dir) freshBuffers() {}

// ErrTooLarge: a file is over MaxFileSize.
var ErrTooLarge = fmt.Errorf("file larger than the %d MiB cap", MaxFileSize>>20)

// Dir is a LinkSource reading the "*.link" files of a directory (not its
// subdirectories), as `in-toto verify --link-dir` does.
type Dir string

// LinkNames lists the directory's "*.link" entries that are not directories.
func (d Dir) LinkNames(context.Context) ([]string, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, fmt.Errorf("reading link directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".link") || e.IsDir() {
			continue
		}
		names = append(names, e.Name())
	}
	return names, nil
}

// ReadLink reads one link file, refusing files over MaxFileSize.
func (d Dir) ReadLink(_ context.Context, name string) ([]byte, error) {
	if name != filepath.Base(name) {
		return nil, fmt.Errorf("link name %q is not a plain file name", name)
	}
	return ReadFile(filepath.Join(string(d), name))
}

// ReadFile reads a layout or link file, refusing files over MaxFileSize.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	// Read into a buffer of the file's size plus one byte (to see a file
	// that grew), not ReadAll's doubling one; stop past the cap.
	data := make([]byte, 0, min(fi.Size(), MaxFileSize)+1)
	for len(data) <= MaxFileSize {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := f.Read(data[len(data):min(cap(data), MaxFileSize+1)])
		data = data[:len(data)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrTooLarge)
	}
	return data, nil
}

// Memory is a LinkSource holding link files in memory, by file name.
type Memory map[string][]byte

// LinkNames lists the held names ending in ".link", sorted.
func (m Memory) LinkNames(context.Context) ([]string, error) {
	names := make([]string, 0, len(m))
	for n := range m {
		if strings.HasSuffix(n, ".link") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadLink returns a held link file.
func (m Memory) ReadLink(_ context.Context, name string) ([]byte, error) {
	data, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("no link %q", name)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", name, ErrTooLarge)
	}
	return data, nil
}

// Metablocks encodes signed link Metablocks into a Memory source, each under
// the file name in-toto gives it: "<step>.<first signature's keyid[:8]>.link".
func Metablocks(mbs ...*in_toto.Metablock) (Memory, error) {
	m := Memory{}
	for _, mb := range mbs {
		l, ok := mb.Signed.(in_toto.Link)
		if !ok {
			return nil, fmt.Errorf("metablock holds %T, not a link", mb.Signed)
		}
		if len(mb.Signatures) == 0 {
			return nil, errors.New("link " + l.Name + " is not signed")
		}
		data, err := json.Marshal(mb)
		if err != nil {
			return nil, err
		}
		m[seal.LinkName(l.Name, mb.Signatures[0].KeyID)] = data
	}
	return m, nil
}

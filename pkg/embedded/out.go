package embedded

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// IncompleteMarker is in an output directory while Run writes it: one that
// still has it was left by a run that was killed, and a new run replaces it
// without Force.
const IncompleteMarker = ".stepseal-incomplete"

// outDir is the output directory of one run: prepared (new, empty, or the
// leftover of a killed run) and marked incomplete until done.
type outDir struct {
	path    string
	created bool
}

// prepareOut makes sure dir is new, empty, or the leftover of a killed run
// (replaced), or force is set, and marks it incomplete.
func prepareOut(w io.Writer, dir string, force bool) (*outDir, error) {
	entries, err := os.ReadDir(dir)
	o := &outDir{path: dir}
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		o.created = true
	case err != nil:
		return nil, fmt.Errorf("--out %s: %w", dir, err)
	case len(entries) > 0 && !force:
		if _, err := os.Stat(filepath.Join(dir, IncompleteMarker)); err != nil {
			return nil, fmt.Errorf("--out %s is not empty (use --force to replace it)", dir)
		}
		fmt.Fprintf(w, "replacing the incomplete output of an interrupted run in %s\n", dir)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(o.marker(), []byte("stepseal run is writing this directory, or was killed while it did\n"), 0o644); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *outDir) marker() string { return filepath.Join(o.path, IncompleteMarker) }

// remove removes what this run created (for bad input and interruptions).
func (o *outDir) remove() {
	if o.created {
		os.RemoveAll(o.path)
		return
	}
	entries, _ := os.ReadDir(o.path)
	for _, e := range entries {
		if e.Name() != IncompleteMarker {
			os.RemoveAll(filepath.Join(o.path, e.Name()))
		}
	}
	os.Remove(o.marker())
}

// done removes the incomplete mark.
func (o *outDir) done() { os.Remove(o.marker()) }

package logserver

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/stepseal/stepseal/pkg/tlog"
)

// openLog opens the served log: DIR/log on the local disk, or
// opts.Storage, which other replicas share.
func openLog(ctx context.Context, dir string, key tlog.Key, opts Options) (*tlog.Log, error) {
	if opts.Storage != nil {
		if opts.Storage.ReadFile == nil {
			return nil, errors.New("logserver: storage " + opts.Storage.Name + " cannot read its files")
		}
		return tlog.OpenStorage(ctx, *opts.Storage, key, opts.Log)
	}
	return tlog.Open(ctx, filepath.Join(dir, "log"), key, opts.Log)
}

// storedPath is the canonical tlog-tiles path of a request's URL path
// (/checkpoint, /tile/L/N[.p/W], /tile/entries/N[.p/W]), and false for
// anything else: only paths that parse reach the storage.
func storedPath(urlPath string) (string, bool) {
	p := strings.TrimPrefix(urlPath, "/")
	if p == layout.CheckpointPath {
		return p, true
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return "", false
	}
	level, index, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	var canonical string
	if level == "entries" {
		i, w, err := layout.ParseTileIndexPartial(index)
		if err != nil {
			return "", false
		}
		canonical = layout.EntriesPath(i, w)
	} else {
		l, i, w, err := layout.ParseTileLevelIndexPartial(level, index)
		if err != nil {
			return "", false
		}
		canonical = layout.TilePath(l, i, w)
	}
	// A path that parses to another one (leading zeros, ...) is not
	// the resource's name.
	return canonical, canonical == p
}

// storedFiles serves a Storage log's tlog-tiles files at the paths a
// directory log's are served, each read exactly as stored.
func storedFiles(read func(ctx context.Context, path string) ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := storedPath(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, err := read(r.Context(), p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			http.NotFound(w, r)
			return
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		w.Write(data)
	}
}

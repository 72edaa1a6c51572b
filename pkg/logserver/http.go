package logserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HTTP API:
//
//	POST /v1/entries                 the document; 201 (new) or 200 (already in the log) with an Answer
//	GET  /v1/entries/{digest}        Answer; ?format=tlog-proof for a C2SP tlog-proof file
//	GET  /v1/search?subject=&kind=&run=&cursor=&limit=   SearchAnswer
//	GET  /v1/witness                 WitnessStatus: the witness policy and the last refusal (404 without witnesses)
//	GET  /checkpoint, /tile/...      the log's tlog-tiles files, as stored (the checkpoint with its cosignatures)
//
// Errors are {"error": "..."} with 400 (not a document), 413 (too large),
// 403 (not signed by an allowed key), 404, 415, 503 with Retry-After
// (pushback) or 500.

// Handler serves the log.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/entries", s.handleAdd)
	mux.HandleFunc("GET /v1/entries/{digest}", s.handleEntry)
	mux.HandleFunc("GET /v1/search", s.handleSearch)
	mux.HandleFunc("GET /v1/witness", s.handleWitness)
	files := http.FileServer(http.Dir(s.log.Dir()))
	if s.opts.Storage != nil {
		files = storedFiles(s.opts.Storage.ReadFile)
	}
	static := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/.") || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path == "/checkpoint" || strings.Contains(r.URL.Path, ".p/") {
			w.Header().Set("Cache-Control", "no-cache")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /checkpoint", static)
	mux.HandleFunc("GET /tile/", static)
	return mux
}

var jsonTypes = map[string]bool{
	"application/json":                      true,
	"application/vnd.dsse.envelope.v1+json": true,
	"application/vnd.in-toto+json":          true,
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !jsonTypes[mt] {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("%w: content type %.80q, want application/json", ErrDocument, ct))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDocumentSize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body larger than %d bytes", ErrDocument, MaxDocumentSize))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: reading the body: %w", ErrDocument, err))
		return
	}
	a, err := s.Add(r.Context(), body)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	status := http.StatusOK
	if a.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, a.Answer)
}

func (s *Server) handleEntry(w http.ResponseWriter, r *http.Request) {
	a, err := s.Entry(r.Context(), r.PathValue("digest"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if r.URL.Query().Get("format") == "tlog-proof" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write(TLogProof(a))
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) {
	q, from, limit, err := ParseSearchQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a, err := s.Search(r.Context(), q, from, limit)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// ParseSearchQuery reads a search's URL query: subject (sha256:<hex>),
// kind, run, cursor and limit; unknown or repeated parameters are refused.
func ParseSearchQuery(raw string) (q Query, from uint64, limit int, err error) {
	vals, err := parseQuery(raw)
	if err != nil {
		return Query{}, 0, 0, err
	}
	for k, v := range vals {
		if len(v) != 1 {
			return Query{}, 0, 0, fmt.Errorf("%w: search parameter %.40q given %d times", ErrDocument, k, len(v))
		}
		switch k {
		case "subject":
			if digestKey(v[0]) == nil || strings.ToLower(v[0]) != v[0] || !strings.HasPrefix(v[0], "sha256:") {
				return Query{}, 0, 0, fmt.Errorf("%w: subject %.80q is not sha256:<64 hex>", ErrDocument, v[0])
			}
			q.Subject = v[0]
		case "kind":
			q.Kind = v[0]
		case "run":
			q.RunID = v[0]
		case "cursor":
			if from, err = ParseCursor(v[0]); err != nil {
				return Query{}, 0, 0, err
			}
		case "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > MaxLimit {
				return Query{}, 0, 0, fmt.Errorf("%w: limit %.20q, want 1 to %d", ErrDocument, v[0], MaxLimit)
			}
			limit = n
		default:
			return Query{}, 0, 0, fmt.Errorf("%w: unknown search parameter %.40q", ErrDocument, k)
		}
	}
	return q, from, limit, nil
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotAllowed):
		return http.StatusForbidden
	case errors.Is(err, ErrDocument):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrBusy):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, err error) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func parseQuery(raw string) (map[string][]string, error) {
	if len(raw) > 4096 {
		return nil, fmt.Errorf("%w: search query of %d bytes", ErrDocument, len(raw))
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: search query: %w", ErrDocument, err)
	}
	return vals, nil
}

package logserver

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stepseal/stepseal/pkg/store/tlogstore"
)

// Answer is the server's answer for one document: its digest, and the
// proof that the log holds its record (tlogstore.Proof: index, record,
// checkpoint, inclusion hashes), which anyone with the log's public key
// checks with tlogstore.VerifyProof.
type Answer struct {
	Digest string `json:"digest"`
	tlogstore.Proof
}

// Result is one search result: a log entry and its inclusion proof
// against the answer's checkpoint.
type Result struct {
	Index  uint64   `json:"index"`
	Record []byte   `json:"record"`
	Hashes [][]byte `json:"hashes"`
}

// SearchAnswer is one page of a search.
type SearchAnswer struct {
	Checkpoint []byte   `json:"checkpoint"`
	Results    []Result `json:"results"`
	// More is true when matching entries below the checkpoint's size were
	// left for the next page.
	More bool `json:"more"`
	// Next is the cursor of the next page.
	Next string `json:"next"`
}

// Page sizes of Search.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

const cursorPrefix = "i"

// FormatCursor is the cursor of a search page that starts at log index i.
func FormatCursor(i uint64) string { return cursorPrefix + strconv.FormatUint(i, 10) }

// ParseCursor reads a cursor; the empty cursor is the start of the log.
func ParseCursor(c string) (uint64, error) {
	if c == "" {
		return 0, nil
	}
	rest, ok := strings.CutPrefix(c, cursorPrefix)
	if !ok || rest == "" || len(rest) > 20 || (len(rest) > 1 && rest[0] == '0') {
		return 0, fmt.Errorf("%w: cursor %.40q", ErrDocument, c)
	}
	i, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: cursor %.40q", ErrDocument, c)
	}
	return i, nil
}

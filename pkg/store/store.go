package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Errors callers branch on with errors.Is. Each also matches its reason in
// stepseal's shared vocabulary (pkg/reject) and that reason's root, so a
// verifier reading evidence from a store tells "refused" (missing, tampered)
// from "could not check" (the store could not be read).
var (
	// ErrNotFound: nothing is stored under the requested key
	// (reject.ErrMissing).
	ErrNotFound = reject.Sentinel(reject.ErrMissing, "not found in store")
	// ErrInvalid: an entry or a key was refused because it is malformed
	// (reject.ErrMalformed).
	ErrInvalid = reject.Sentinel(reject.ErrMalformed, "invalid store entry")
	// ErrCorrupt: stored bytes no longer match their digest, or what a log
	// binds them to (tampering or disk damage; reject.ErrMismatch).
	ErrCorrupt = reject.Sentinel(reject.ErrMismatch, "store entry is corrupt")
	// ErrUnavailable: the store could not be read or written (I/O,
	// permissions, a log that cannot be read), so nothing was checked
	// (reject.ErrUnavailable, under reject.ErrUnableToCheck).
	ErrUnavailable = reject.Sentinel(reject.ErrUnavailable, "store unavailable")
)

// Kinds of entries.
const (
	KindLink        = "link"
	KindLayout      = "layout"
	KindProvenance  = "provenance"
	KindAttestation = "attestation"
	// KindTrust is a TUF metadata file a verifier accepted (the history of
	// trust itself: the controller appends each version it accepts).
	KindTrust = "tuf"
)

// MaxEntrySize bounds one entry's data: the largest document (link, layout,
// DSSE envelope) stepseal reads. pkg/verify refuses larger layout and link
// files with this same constant (verify.MaxFileSize), so every document a
// verifier accepts can be stored.
const MaxEntrySize = 64 << 20

// MaxSubjects bounds one entry's subjects: as many as fit a subject list of
// MaxEntrySize bytes (71-byte digests, one a line). A document names each
// of its subjects in more bytes than that (a link product is at least
// `"p":{"sha256":"<64 hex>"}`), so no document of MaxEntrySize bytes or less
// has more distinct subjects.
const MaxSubjects = MaxEntrySize / (len("sha256:") + 64 + 1)

// MaxNameSize bounds an entry's Name and RunID, in bytes.
const MaxNameSize = 1024

// Entry is one stored piece of metadata.
type Entry struct {
	// Kind is one of the Kind* constants.
	Kind string `json:"kind"`
	// Name describes the entry, e.g. the link's step name or file name.
	Name string `json:"name"`
	// RunID ties the entry to one run, when it belongs to one.
	RunID string `json:"runID,omitempty"`
	// Subjects are the digests ("sha256:<hex>") this entry speaks about: a
	// link's products, a statement's subjects.
	Subjects []string `json:"subjects"`
	// Data is the stored document (a Metablock or a DSSE envelope), byte for byte.
	Data []byte `json:"-"`
	// Digest is "sha256:<hex>" of Data; set by Put.
	Digest string `json:"digest"`
}

// Filter selects entries in List. Zero fields match everything.
type Filter struct {
	Kind    string
	RunID   string
	Subject string
}

// Matches reports whether e passes the filter.
func (f Filter) Matches(e Entry) bool {
	if f.Kind != "" && e.Kind != f.Kind {
		return false
	}
	if f.RunID != "" && e.RunID != f.RunID {
		return false
	}
	if f.Subject != "" {
		for _, s := range e.Subjects {
			if s == f.Subject {
				return true
			}
		}
		return false
	}
	return true
}

// Store keeps entries. Put is idempotent: storing the same Data twice yields
// one entry with the same digest. Implementations are safe for concurrent use.
type Store interface {
	// Put stores e and returns its digest.
	Put(ctx context.Context, e Entry) (string, error)
	// Get returns the entries that list subject among their Subjects,
	// ordered by digest; ErrNotFound when there are none.
	Get(ctx context.Context, subject string) ([]Entry, error)
	// Fetch returns the entry with the given digest; ErrNotFound if absent.
	Fetch(ctx context.Context, digest string) (Entry, error)
	// List returns every entry passing f, ordered by digest.
	List(ctx context.Context, f Filter) ([]Entry, error)
}

// IndexedPutter is the optional capability of a Store that appends every
// entry to a transparency log (pkg/store/tlogstore): PutIndexed stores e like
// Put and also returns the log index of the record that holds it.
type IndexedPutter interface {
	PutIndexed(ctx context.Context, e Entry) (digest string, index uint64, err error)
}

// Pager is the optional capability of a Store that reads List's answer a
// page at a time (pkg/store/pgstore), so a caller walking a large store
// holds one page: ListPage returns up to limit entries passing f with a
// digest greater than after (empty: from the start), ordered by digest, and
// next, the after of the following page: "" once a page comes back short (a
// full last page is followed by an empty one).
type Pager interface {
	ListPage(ctx context.Context, f Filter, after string, limit int) (page []Entry, next string, err error)
}

// Checkpointer is the optional capability of a Store backed by a
// transparency log: LogCheckpoint returns the log's latest signed
// checkpoint (the note, byte for byte) that this Store verified; after a
// PutIndexed it covers that entry. Run annotations carry it so that
// checkpoints seen by different parties can be compared (gossip: a log
// showing two parties two trees is caught by `stepseal log monitor
// --gossip`).
type Checkpointer interface {
	LogCheckpoint(ctx context.Context) ([]byte, error)
}

// Closer is the optional capability of a Store that holds resources (a
// directory lock, open files, a background checkpointer) until it is
// closed. Close releases them; the Store is unusable afterwards.
type Closer interface {
	Close(ctx context.Context) error
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Digest returns "sha256:<hex>" of data.
func Digest(data []byte) string {
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Validate checks an entry before it is stored and normalises it: it sets
// Digest, sorts and de-duplicates Subjects.
func Validate(e *Entry) error {
	switch e.Kind {
	case KindLink, KindLayout, KindProvenance, KindAttestation, KindTrust:
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalid, e.Kind)
	}
	if len(e.Data) == 0 {
		return fmt.Errorf("%w: %s %q has no data", ErrInvalid, e.Kind, e.Name)
	}
	if len(e.Data) > MaxEntrySize {
		return fmt.Errorf("%w: %s %q is larger than %d bytes", ErrInvalid, e.Kind, e.Name, MaxEntrySize)
	}
	if strings.ContainsAny(e.Name, "\x00\n") || len(e.Name) > MaxNameSize {
		return fmt.Errorf("%w: bad name %q", ErrInvalid, e.Name)
	}
	if strings.ContainsAny(e.RunID, "\x00\n") || len(e.RunID) > MaxNameSize {
		return fmt.Errorf("%w: %s %q: bad run ID %.80q (at most %d bytes, no NUL or newline)", ErrInvalid, e.Kind, e.Name, e.RunID, MaxNameSize)
	}
	seen := map[string]bool{}
	subjects := make([]string, 0, len(e.Subjects))
	for _, s := range e.Subjects {
		if !digestRE.MatchString(s) {
			return fmt.Errorf("%w: %s %q: subject %q is not sha256:<64 hex>", ErrInvalid, e.Kind, e.Name, s)
		}
		if !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	if len(subjects) > MaxSubjects {
		return fmt.Errorf("%w: %s %q: %d distinct subjects, at most %d", ErrInvalid, e.Kind, e.Name, len(subjects), MaxSubjects)
	}
	sort.Strings(subjects)
	e.Subjects = subjects
	d := Digest(e.Data)
	if e.Digest != "" && e.Digest != d {
		return fmt.Errorf("%w: %s %q: digest %s does not match data (%s)", ErrInvalid, e.Kind, e.Name, e.Digest, d)
	}
	e.Digest = d
	return nil
}

// ValidDigest reports whether s is "sha256:<64 lowercase hex>".
func ValidDigest(s string) bool { return digestRE.MatchString(s) }

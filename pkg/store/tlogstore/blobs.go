package tlogstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Errors about the blobs beside the log, both refusals and also
// store.ErrCorrupt (reject.ErrMismatch). Their messages name the log entry,
// its kind, name and digest, and the blob. A blob that is there but cannot
// be read (permissions, I/O) is neither: it is store.ErrUnavailable.
var (
	// ErrBlobMissing: a document or subject list a log entry binds is not
	// beside the log (deleted, or lacking from a proof): the evidence the
	// log commits to is gone (reject.ErrMissing).
	ErrBlobMissing = reject.Sentinel(reject.ErrMissing, "blob missing")
	// ErrBlobMismatch: a document or subject list beside the log is not
	// what its log entry binds (edited, replaced or damaged; reject.ErrMismatch).
	ErrBlobMismatch = reject.Sentinel(reject.ErrMismatch, "blob does not match its log entry")
)

// blobDir is the directory of content-addressed blobs beside a log: the
// documents and subject lists too large to be inline in their records,
// each named by the hex of its sha256.
type blobDir string

func (d blobDir) path(digest string) string {
	return filepath.Join(string(d), strings.TrimPrefix(digest, "sha256:"))
}

// err is a refusal of blob digest of log entry i (record r): sentinel, also
// store.ErrCorrupt, wrapping cause.
func (d blobDir) err(sentinel error, i uint64, r record, what, digest string, cause error) error {
	return fmt.Errorf("%w: %w: log entry %d, %s: %s blobs/%s: %w", store.ErrCorrupt, sentinel, i, r, what, strings.TrimPrefix(digest, "sha256:"), cause)
}

// readErr is a blob that could not be read: ErrBlobMissing when it is not
// there, store.ErrUnavailable (no verdict) when reading it failed.
func (d blobDir) readErr(err error, i uint64, r record, what, digest string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return d.err(ErrBlobMissing, i, r, what, digest, err)
	}
	return fmt.Errorf("%w: log entry %d, %s: %s blobs/%s: %w", store.ErrUnavailable, i, r, what, strings.TrimPrefix(digest, "sha256:"), err)
}

// read reads blob digest, at most size bytes (one more says it is too long).
func (d blobDir) read(i uint64, r record, what, digest string, size int) ([]byte, error) {
	f, err := os.Open(d.path(digest))
	if err != nil {
		return nil, d.readErr(err, i, r, what, digest)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(size)+1))
	if err != nil {
		return nil, d.readErr(err, i, r, what, digest)
	}
	if len(b) != size || store.Digest(b) != digest {
		return nil, d.err(ErrBlobMismatch, i, r, what, digest, fmt.Errorf("%d bytes with digest %s, the entry binds %d bytes with digest %s", len(b), store.Digest(b), size, digest))
	}
	return b, nil
}

// data returns the document of log entry i (record r): inline, or its blob
// checked against r.
func (d blobDir) data(i uint64, r record) ([]byte, error) {
	if r.Data != nil {
		return r.Data, nil
	}
	return d.read(i, r, "document", r.Digest, r.Size)
}

// subjects returns the subjects of log entry i (record r): inline, or its
// subject list blob checked against r.
func (d blobDir) subjects(i uint64, r record) ([]string, error) {
	if r.inlineSubjects() {
		return r.entry(nil).Subjects, nil
	}
	b, err := d.read(i, r, "subject list", r.SubjectsDigest, r.SubjectCount*subjectLine)
	if err != nil {
		return nil, err
	}
	return d.parseSubjects(i, r, b)
}

func (d blobDir) parseSubjects(i uint64, r record, b []byte) ([]string, error) {
	subs, err := parseSubjects(b, r.SubjectCount)
	if err != nil {
		// The list hashes to what the leaf binds but is not a list: the
		// record itself was written wrong.
		return nil, d.err(ErrBlobMismatch, i, r, "subject list", r.SubjectsDigest, err)
	}
	return subs, nil
}

// checkData streams the document's blob through sha256 without keeping it
// (an audit of a large store holds one entry's subjects at a time, never
// its documents).
func (d blobDir) checkData(i uint64, r record) error {
	if r.Data != nil {
		return nil
	}
	f, err := os.Open(d.path(r.Digest))
	if err != nil {
		return d.readErr(err, i, r, "document", r.Digest)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, int64(r.Size)+1))
	if err != nil {
		return d.readErr(err, i, r, "document", r.Digest)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != int64(r.Size) || got != r.Digest {
		return d.err(ErrBlobMismatch, i, r, "document", r.Digest, fmt.Errorf("%d bytes with digest %s, the entry binds %d bytes with digest %s", n, got, r.Size, r.Digest))
	}
	return nil
}

// write stores b as blob digest unless a blob with that content is there.
func (d blobDir) write(digest string, b []byte) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("%w: tlogstore: %w", store.ErrUnavailable, err)
	}
	p := d.path(digest)
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(b)) {
		if old, err := readLimited(p, len(b)); err == nil && store.Digest(old) == digest {
			return nil
		}
	}
	if err := signing.WriteFileAtomic(p, b, 0o644); err != nil {
		return fmt.Errorf("%w: tlogstore: blob %s: %w", store.ErrUnavailable, digest, err)
	}
	return nil
}

func readLimited(p string, size int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, int64(size)+1))
}

package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/reject"
)

// ErrTrust matches every error of this package that is a verdict on, or a
// failure to obtain, TUF metadata: errors.Is(err, ErrTrust).
var ErrTrust = errors.New("trust")

// category is one kind of trust failure: it matches ErrTrust, its
// pkg/reject reason and that reason's root.
type category struct {
	name   string
	reason *reject.Reason
}

func (c *category) Error() string { return c.name }

func (c *category) Is(target error) bool {
	return target == ErrTrust || reject.Matches(c.reason, target)
}

func newCategory(name string, r *reject.Reason) error { return &category{name: name, reason: r} }

// Error categories callers branch on with errors.Is. Each matches ErrTrust
// and one reason of pkg/reject; only ErrTimeout and ErrUnavailable are
// reject.ErrUnableToCheck, every other one is reject.ErrRefused.
var (
	// ErrUnsigned: metadata without a threshold of valid signatures by the
	// keys its delegator names (tampered, signed by another key, a key
	// compromised below threshold, duplicate signatures).
	ErrUnsigned = newCategory("not signed by a threshold of its keys", reject.ErrThreshold)
	// ErrRollback: a version lower than one already trusted, or a role
	// dropped from the snapshot.
	ErrRollback = newCategory("rollback", reject.ErrRollback)
	// ErrFreeze: metadata whose expiry has passed (a replayed, frozen view).
	ErrFreeze = newCategory("expired metadata", reject.ErrExpired)
	// ErrMixAndMatch: a file that is not the version or bytes the snapshot
	// or timestamp binds (files from different repository states).
	ErrMixAndMatch = newCategory("mix-and-match", reject.ErrMismatch)
	// ErrDigestMismatch: an artifact whose digest or size is not the one its
	// role vouches for.
	ErrDigestMismatch = newCategory("digest mismatch", reject.ErrMismatch)
	// ErrTooLarge: a file larger than its meta length or the size cap of its
	// role (endless data).
	ErrTooLarge = newCategory("too large", reject.ErrMalformed)
	// ErrMalformed: bytes that are not well-formed TUF metadata (invalid
	// JSON, duplicate keys, null where a value is required, wrong _type,
	// out-of-range numbers, bad role names).
	ErrMalformed = newCategory("malformed metadata", reject.ErrMalformed)
	// ErrUnsupported: well-formed but refused on purpose (spec_version other
	// than 1.x, unknown key types, succinct hash bins).
	ErrUnsupported = newCategory("unsupported", reject.ErrUnsupported)
	// ErrNotDelegated: a role lists a path that no delegation gives it.
	ErrNotDelegated = newCategory("not delegated", reject.ErrUnauthorized)
	// ErrNotListed: no role that may vouch for a path lists it.
	ErrNotListed = newCategory("not listed", reject.ErrMissing)
	// ErrAmbiguousDelegation: more than one sibling delegation matches a
	// path (one team's role could shadow another's).
	ErrAmbiguousDelegation = newCategory("ambiguous delegation", reject.ErrPolicy)
	// ErrDiamondDelegation: a role delegated by more than one delegation.
	ErrDiamondDelegation = newCategory("diamond delegation", reject.ErrPolicy)
	// ErrDelegationCycle: a role that delegates, directly or not, to itself.
	ErrDelegationCycle = newCategory("delegation cycle", reject.ErrPolicy)
	// ErrDelegationLimit: more roles or a deeper chain than the client walks.
	ErrDelegationLimit = newCategory("delegation limit", reject.ErrUnsupported)
	// ErrTimeout: a file or the whole refresh took longer than allowed.
	ErrTimeout = newCategory("timeout", reject.ErrUnavailable)
	// ErrUnavailable: the repository or the local cache could not be read
	// (network, HTTP status, I/O), or the client has not refreshed yet.
	ErrUnavailable = newCategory("unavailable", reject.ErrUnavailable)
	// ErrRootPin: the root the client starts from is not the one
	// ClientOptions.RootSHA256 pins (a repository, mirror or cache that
	// hands out another root).
	ErrRootPin = newCategory("root pin mismatch", reject.ErrMismatch)
)

// Error is a trust failure: its Category (one of the Err* values above),
// the role, version, path and TUF key IDs concerned when known, and the
// go-tuf error it classifies (Unwrap).
type Error struct {
	Category error
	Role     string
	Version  int64
	Path     string
	// KeyIDs are TUF key IDs (sha256 of the canonical key), not in-toto's.
	KeyIDs []string
	Detail string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Category.Error())
	if e.Role != "" {
		fmt.Fprintf(&b, ": role %q", e.Role)
		if e.Version > 0 {
			fmt.Fprintf(&b, " v%d", e.Version)
		}
	}
	if e.Path != "" {
		fmt.Fprintf(&b, ": path %q", e.Path)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if len(e.KeyIDs) > 0 {
		fmt.Fprintf(&b, " (TUF key IDs %s)", strings.Join(e.KeyIDs, ", "))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Is matches the category (and through it ErrTrust and pkg/reject).
func (e *Error) Is(target error) bool { return errors.Is(e.Category, target) }

// Unwrap returns the underlying (often go-tuf) error.
func (e *Error) Unwrap() error { return e.Err }

func newErr(cat error, role string, format string, args ...any) *Error {
	return &Error{Category: cat, Role: role, Detail: fmt.Sprintf(format, args...)}
}

// snapshotRoleRollback is go-tuf's message for a new snapshot listing a
// role at a lower version than the trusted snapshot.
var snapshotRoleRollback = regexp.MustCompile(`expected \S+\.json version \d+, got \d+`)

// classify turns an error of go-tuf (or of this package's fetcher) met while
// loading role into an *Error. An *Error passes through unchanged.
func classify(err error, role string) error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		if te.Role == "" {
			te.Role = role
		}
		return te
	}
	cat := ErrMalformed
	switch {
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		cat = ErrUnsigned
	case errors.Is(err, &metadata.ErrEqualVersionNumber{}), errors.Is(err, &metadata.ErrBadVersionNumber{}):
		// go-tuf uses ErrBadVersionNumber both for "lower than trusted"
		// (timestamp, or a role in a new snapshot) and for "not the version
		// the timestamp, snapshot or URL names".
		cat = ErrMixAndMatch
		if msg := err.Error(); strings.Contains(msg, "must be >=") || snapshotRoleRollback.MatchString(msg) {
			cat = ErrRollback
		}
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		cat = ErrFreeze
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		cat = ErrMixAndMatch
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		cat = ErrTooLarge
	case errors.Is(err, &metadata.ErrDownloadHTTP{}), errors.Is(err, &metadata.ErrDownload{}):
		cat = ErrUnavailable
	case errors.Is(err, &metadata.ErrRepository{}):
		cat = ErrRollback
		if !strings.Contains(err.Error(), "missing info") {
			cat = ErrMalformed
		}
	case errors.Is(err, &metadata.ErrValue{}):
		cat = ErrMalformed
		if strings.Contains(err.Error(), "multiple signatures") {
			cat = ErrUnsigned
		}
	case isTimeout(err):
		cat = ErrTimeout
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		// A cache file missing or unreadable (LoadCache, staging).
		cat = ErrUnavailable
	}
	return &Error{Category: cat, Role: role, Err: err}
}

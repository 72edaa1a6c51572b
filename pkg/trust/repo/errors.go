package repo

import (
	"fmt"
	"strings"

	"github.com/stepseal/stepseal/pkg/reject"
)

// Errors callers branch on with errors.Is. Each also matches its
// reject.Reason and reject.ErrRefused.
var (
	// ErrMalformed: a proposal does not parse strictly (bad JSON, null, wrong
	// _type, missing field, bad hash or length).
	ErrMalformed = reject.Sentinel(reject.ErrMalformed, "malformed TUF metadata")
	// ErrTooLarge: a proposal is over the size cap.
	ErrTooLarge = reject.Sentinel(reject.ErrMalformed, "TUF metadata too large")
	// ErrUnsupported: spec_version not 1.x, succinct roles, hash-prefix
	// delegations, key types TUF clients mislabel.
	ErrUnsupported = reject.Sentinel(reject.ErrUnsupported, "unsupported TUF feature")
	// ErrRoleName: a role name outside [a-z0-9][a-z0-9-]{0,62}, or a reserved
	// top-level name.
	ErrRoleName = reject.Sentinel(reject.ErrPolicy, "invalid role name")
	// ErrPattern: a delegation path pattern other than literal segments and
	// whole-segment "*".
	ErrPattern = reject.Sentinel(reject.ErrPolicy, "invalid path pattern")
	// ErrOverlap: two sibling delegations' patterns can match the same path.
	ErrOverlap = reject.Sentinel(reject.ErrPolicy, "overlapping sibling delegations")
	// ErrDiamond: a role would have two parents.
	ErrDiamond = reject.Sentinel(reject.ErrPolicy, "role delegated by two parents")
	// ErrCycle: a role would delegate to itself or to one of its ancestors.
	ErrCycle = reject.Sentinel(reject.ErrPolicy, "delegation cycle")
	// ErrDelegation: a delegation's keys or threshold are unusable
	// (threshold < 1 or above the key count, key ID not matching its key).
	ErrDelegation = reject.Sentinel(reject.ErrPolicy, "invalid delegation")
	// ErrNotDelegated: no current delegation for the proposal's role.
	ErrNotDelegated = reject.Sentinel(reject.ErrUnauthorized, "role not delegated")
	// ErrOutsidePaths: a target (or a child delegation's pattern) outside the
	// role's delegated paths.
	ErrOutsidePaths = reject.Sentinel(reject.ErrUnauthorized, "path outside the role's delegation")
	// ErrWrongKey: signed by a key the current delegation does not list.
	ErrWrongKey = reject.Sentinel(reject.ErrUnauthorized, "signed by a key not in the delegation")
	// ErrThreshold: fewer valid signatures than the delegation's threshold.
	ErrThreshold = reject.Sentinel(reject.ErrThreshold, "below the signature threshold")
	// ErrVersion: the version is not above the current one (or, for root,
	// not exactly one above).
	ErrVersion = reject.Sentinel(reject.ErrRollback, "version not bumped")
	// ErrExpired: the proposal expires before now.
	ErrExpired = reject.Sentinel(reject.ErrExpired, "expired")
	// ErrExpiryTooFar: the proposal expires later than the repository allows.
	ErrExpiryTooFar = reject.Sentinel(reject.ErrPolicy, "expiry beyond the allowed bound")
	// ErrProposal: proposals that cannot be merged (different signed
	// content) or a key that already signed.
	ErrProposal = reject.Sentinel(reject.ErrMismatch, "proposals differ")
	// ErrOnlineKey: the online signer is not the key root names for snapshot
	// and timestamp.
	ErrOnlineKey = reject.Sentinel(reject.ErrUnauthorized, "online key not trusted by root")
	// ErrNotRepo: the directory holds no (or a damaged) repository.
	ErrNotRepo = reject.Sentinel(reject.ErrMissing, "not a stepseal TUF repository")
	// ErrStale: another Accept or Tick wrote the repository after this Repo
	// was opened; open it again and retry (the proposals are unaffected).
	ErrStale = reject.Sentinel(reject.ErrUnavailable, "repository changed since it was opened")
	// ErrNotListed: a target file that no role lists with its sha256 and
	// length (the repository hosts only files its metadata vouches for).
	ErrNotListed = reject.Sentinel(reject.ErrMissing, "target file not listed")
	// ErrPublished: a published versioned file differs from the repository's
	// file of the same name (versioned files are immutable).
	ErrPublished = reject.Sentinel(reject.ErrMismatch, "published metadata differs")
)

// Error is a refusal naming what it is about: the role, its version, a key,
// a path or pattern, and the conflicting role or pattern where there is one.
// errors.Is matches its Kind (one of the Err* sentinels above).
type Error struct {
	Kind     error
	Role     string
	Version  int64
	Key      string
	Path     string
	Conflict string // the other role or pattern involved
	Detail   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Role != "" {
		fmt.Fprintf(&b, ": role %s", e.Role)
		if e.Version > 0 {
			fmt.Fprintf(&b, " v%d", e.Version)
		}
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ", key %s", e.Key)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, ", path %q", e.Path)
	}
	if e.Conflict != "" {
		fmt.Fprintf(&b, ", conflicts with %s", e.Conflict)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

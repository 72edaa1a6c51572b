// Package trust is stepseal's TUF client: it keeps a verified copy of a
// TUF repository's metadata (go-tuf v2.4.2, not forked) and resolves which
// developer role vouches for an artifact path, through which delegations,
// signed by which TUF keys.
//
// Client.Refresh follows the TUF client workflow with go-tuf's updater up
// to the top-level targets (root, timestamp, snapshot, targets) and keeps
// the verified snapshot. Delegated roles are loaded lazily: Resolve and
// VerifyArtifact walk the delegations from the top-level targets and load
// only the roles on the path's way, each from the copy verified in the
// previous state, the cache or the source, checked by the guard and then
// by go-tuf's UpdateDelegatedTargets (the delegator's keys and threshold,
// the snapshot's version, length and hashes, expiry at the refresh's
// time). Verified roles are kept in memory in the state of that refresh,
// so the next Refresh invalidates them. LoadAll loads every role (the
// full check of `trust status --all`). The client adds what go-tuf does
// not do:
//
//  1. The cached root.json is the trusted root; BootstrapRoot is used only
//     when there is none, so a client cannot be rolled back to an older
//     root by being handed it again.
//  2. Every metadata byte, downloaded or cached, passes a strict guard
//     (checkMetadata) before go-tuf parses it: valid UTF-8 JSON without
//     duplicate keys or null outside "custom", spec_version 1.x, required
//     fields and types, known key types, size caps per role. go-tuf v2.4.2
//     panics on some such input before checking signatures; every go-tuf
//     call also runs under recover().
//  3. Downloads carry the caller's ctx, a per-file timeout and a size cap.
//  4. The refresh works in a staging directory: the cache and the state
//     readers see change only when everything verified; readers see an
//     immutable state swapped atomically.
//  5. stepseal's delegation rules: a role delegated twice (diamond), a
//     delegation back to an ancestor (cycle) and a role name outside
//     [a-z0-9][a-z0-9-]{0,62} are refused, and Resolve refuses a path
//     that more than one sibling delegation matches (one team's broad
//     delegation shadowing another's). Such roles, and roles that fail to
//     verify, are refused for the paths that reach them only; the rest of
//     the repository still resolves.
//
// What a lookup checks, and what only the full load checks. For each role
// on the path's way, a lookup checks: the guard and size caps on its
// bytes, go-tuf's verification, the name rule, MaxDepth and MaxRoles
// (counting the roles loaded in this state), that it is not its own
// ancestor (cycle), and, at each delegator on the way, that exactly one
// of the delegator's delegations matches the path: the siblings'
// patterns are in the delegator, so no sibling is loaded for that, and
// the answer is the one the full load gives. Two rules need roles off the
// path, which a lookup does not load:
//
//   - a diamond is refused once both of its delegators have been loaded
//     in this state (by lookups or LoadAll): until then a path through
//     the one delegation walked resolves; from then on every path through
//     the role is refused. LoadAll refuses every diamond of the tree.
//   - a path no role on its way lists is ErrNotListed, unless a role
//     loaded in this state lists it without being delegated it
//     (ErrNotDelegated). Both are refusals; after LoadAll the category is
//     the one the whole tree gives.
//
// Status reports the roles loaded so far (Status.AllLoaded says whether
// LoadAll ran), and the refusals met so far.
//
// Every error is an *Error in one category (ErrUnsigned, ErrRollback,
// ErrFreeze, ErrMixAndMatch, …), matching ErrTrust and a reason of
// pkg/reject, and naming the role, version, path and TUF key IDs.
package trust

// Package trust is stepseal's TUF client: it keeps a verified copy of a
// TUF repository's metadata (go-tuf v2.4.2, not forked) and resolves which
// developer role vouches for an artifact path, through which delegations,
// signed by which TUF keys.
//
// Client.Refresh follows the TUF client workflow with go-tuf's updater,
// then loads every delegated role; it adds what go-tuf does not do:
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
// Every error is an *Error in one category (ErrUnsigned, ErrRollback,
// ErrFreeze, ErrMixAndMatch, …), matching ErrTrust and a reason of
// pkg/reject, and naming the role, version, path and TUF key IDs.
package trust

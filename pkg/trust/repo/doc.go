// Package repo is the repository side of stepseal's TUF trust: it creates a
// TUF repository (root, targets, snapshot, timestamp; consistent snapshots),
// delegates artifact paths to team roles under stepseal's rules (terminating,
// non-overlapping siblings, one parent, no cycles), lets developers sign
// releases offline as proposals, and accepts proposals through one gate —
// Accept, the only writer of snapshot and timestamp — before publishing the
// metadata to a directory any TUF client (go-tuf's updater among them) reads.
package repo

// Package repo is the repository side of stepseal's TUF trust: it creates a
// TUF repository (root, targets, snapshot, timestamp; consistent snapshots),
// delegates artifact paths to team roles under stepseal's rules (terminating,
// non-overlapping siblings, one parent, no cycles), lets developers sign
// releases offline as proposals, and accepts proposals through one gate —
// Accept — before publishing the metadata to a directory or an OCI
// repository any TUF client (go-tuf's updater among them) reads. Resign
// keeps snapshot and timestamp alive between changes from the published
// repository alone (for the controller or a CronJob), signing only what a
// pkg/trust client just verified; Follow lets the publisher number its
// next versions above the re-signer's.
package repo

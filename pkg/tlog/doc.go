// Package tlog is stepseal's embedded, tamper-evident transparency log: an
// append-only Merkle tree (RFC 6962 hashing, C2SP tlog-tiles layout) stored in
// a directory by Tessera's POSIX driver, with a C2SP tlog-checkpoint signed by
// an Ed25519 note key (or, through OpenStorage, by another Tessera driver
// several processes share, such as the AWS driver of pkg/logserver/awslog).
//
// Log is the writer: Append returns an entry's index only once the entry is
// integrated and a signed checkpoint covering it is on disk. Client is the
// verifier: it needs only the log's public key and its files, and it detects
// a changed entry (ErrInclusion), a rewritten or forked log (ErrConsistency,
// ErrFork), a checkpoint signed by another key (ErrBadCheckpoint) and a
// checkpoint older than one already seen (ErrRollback). Proof arithmetic is
// transparency-dev/merkle's; nothing here hashes tree nodes by hand.
package tlog

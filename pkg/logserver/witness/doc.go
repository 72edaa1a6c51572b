// Package witness is the served log's witness configuration and the
// clients' check of witness cosignatures. A Policy is a set of witnesses
// (C2SP tlog-witness; their keys sign C2SP tlog-cosignature/v1 lines on the
// log's checkpoints) and how many of them must cosign: the server hands it
// to Tessera, which publishes a checkpoint only once the policy is
// satisfied, and every client checks it on each checkpoint it accepts, so
// a log that shows a client a tree the witnesses did not see (a fork, a
// rollback, a split view) is refused with ErrNotWitnessed.
package witness

// Package witnesstest runs a real C2SP tlog-witness for tests:
// transparency-dev/witness's omniwitness (built pinned by
// hack/install-test-deps.sh) on 127.0.0.1, knowing one log.
package witnesstest

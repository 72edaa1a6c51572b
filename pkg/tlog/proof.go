package tlog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

var hasher = rfc6962.DefaultHasher

// LeafHash is the RFC 6962 leaf hash of an entry's data.
func LeafHash(data []byte) []byte { return hasher.HashLeaf(data) }

// VerifyInclusionProof checks that data is the entry at index in the tree cp
// commits to, given the proof's hashes. Failures are ErrInclusion.
func VerifyInclusionProof(data []byte, index uint64, cp Checkpoint, hashes [][]byte) error {
	if err := cp.check("inclusion"); err != nil {
		return err
	}
	if index >= cp.Size {
		return fmt.Errorf("%w: %w: entry %d, tree %s has %d entries", ErrInclusion, ErrNotIntegrated, index, cp, cp.Size)
	}
	if err := proof.VerifyInclusion(hasher, index, cp.Size, LeafHash(data), hashes, cp.Hash); err != nil {
		return fmt.Errorf("%w: entry %d in tree %s: %s", ErrInclusion, index, cp, proofError(err))
	}
	return nil
}

// VerifyConsistencyProof checks that the tree newer commits to extends the
// one older commits to. A smaller newer tree is ErrRollback; two different
// roots for one size are ErrFork; any other failure is ErrConsistency.
func VerifyConsistencyProof(older, newer Checkpoint, hashes [][]byte) error {
	if err := older.check("older"); err != nil {
		return err
	}
	if err := newer.check("newer"); err != nil {
		return err
	}
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: checkpoints of two logs, %q and %q", ErrConsistency, older.Origin, newer.Origin)
	}
	if newer.Size < older.Size {
		return fmt.Errorf("%w: tree of %d entries (%s) after one of %d (%s)", ErrRollback, newer.Size, newer, older.Size, older)
	}
	if newer.Size == older.Size {
		if !bytes.Equal(newer.Hash, older.Hash) {
			return fmt.Errorf("%w: %w: two signed roots for size %d: %s and %s", ErrConsistency, ErrFork, older.Size, older, newer)
		}
		return nil
	}
	if err := proof.VerifyConsistency(hasher, older.Size, newer.Size, hashes, older.Hash, newer.Hash); err != nil {
		return fmt.Errorf("%w: tree %s does not extend %s: %s", ErrConsistency, newer, older, proofError(err))
	}
	return nil
}

// proofError words a failed proof check. The merkle library prints a root
// mismatch as two decimal byte arrays; roots are shown in hex, as in the
// checkpoints a reader compares them with (C2SP prints them in base64).
func proofError(err error) string {
	var rm proof.RootMismatchError
	if errors.As(err, &rm) {
		return fmt.Sprintf("the proof computes root %s, the checkpoint commits to %s", hex.EncodeToString(rm.CalculatedRoot), hex.EncodeToString(rm.ExpectedRoot))
	}
	return err.Error()
}

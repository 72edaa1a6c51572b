package tlog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"

	f_log "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// maxCheckpointSize bounds a checkpoint read from untrusted storage.
const maxCheckpointSize = 16 << 10

// Checkpoint is a verified C2SP tlog-checkpoint: the log's origin, its tree
// size and root hash, and the signed note they were read from. Only
// ParseCheckpoint and Client make Checkpoints that verification functions
// accept; a Checkpoint built by hand is rejected with ErrBadCheckpoint.
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   []byte
	// Raw is the signed note, byte for byte.
	Raw []byte

	verified bool
}

// String names the checkpoint in messages: origin, size and a root prefix.
func (c Checkpoint) String() string {
	h := hex.EncodeToString(c.Hash)
	if len(h) > 12 {
		h = h[:12]
	}
	return fmt.Sprintf("%s@%d(%s)", c.Origin, c.Size, h)
}

// ParseCheckpoint verifies raw's signature with v and parses it. The origin
// must be v's name and the root a SHA-256 hash. Errors are ErrBadCheckpoint.
func ParseCheckpoint(raw []byte, v note.Verifier) (Checkpoint, error) {
	if len(raw) > maxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, more than %d", ErrBadCheckpoint, len(raw), maxCheckpointSize)
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return Checkpoint{}, fmt.Errorf("%w: not signed by the key of log %q (key hash %08x)", ErrBadCheckpoint, v.Name(), v.KeyHash())
		}
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	signed := false
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			signed = true
		}
	}
	if !signed {
		return Checkpoint{}, fmt.Errorf("%w: not signed by the key of log %q (key hash %08x)", ErrBadCheckpoint, v.Name(), v.KeyHash())
	}
	var cp f_log.Checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	if cp.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrBadCheckpoint, cp.Origin, v.Name())
	}
	if len(cp.Hash) != 32 {
		return Checkpoint{}, fmt.Errorf("%w: %s size %d: root hash of %d bytes, want 32", ErrBadCheckpoint, cp.Origin, cp.Size, len(cp.Hash))
	}
	// The body must be the three lines the signature covers, in canonical
	// form, so two different byte strings never mean the same checkpoint.
	if !bytes.HasPrefix([]byte(n.Text), cp.Marshal()) {
		return Checkpoint{}, fmt.Errorf("%w: %s size %d: body is not in canonical form", ErrBadCheckpoint, cp.Origin, cp.Size)
	}
	return Checkpoint{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash, Raw: bytes.Clone(raw), verified: true}, nil
}

func (c Checkpoint) check(what string) error {
	if !c.verified {
		return fmt.Errorf("%w: %s checkpoint %s was not obtained by verifying a signed checkpoint", ErrBadCheckpoint, what, c)
	}
	return nil
}

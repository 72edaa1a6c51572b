package trust

import (
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Verified is a copy of the top-level metadata of a client's current
// verified state: root, timestamp and snapshot as go-tuf verified them at
// the last successful Refresh (or LoadCache). The copy is the caller's:
// the repository's online re-signer (pkg/trust/repo Resign) derives the
// next timestamp and snapshot from it, so it never vouches for anything
// the client did not verify.
type Verified struct {
	Root      *metadata.Metadata[metadata.RootType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
}

// Verified returns a copy of the verified top-level metadata; ErrUnavailable
// before any state verified.
func (c *Client) Verified() (*Verified, error) {
	st := c.state.Load()
	if st == nil {
		return nil, &Error{Category: ErrUnavailable, Detail: "no verified metadata yet: Refresh first"}
	}
	v := &Verified{}
	var err error
	if v.Root, err = copyMetadata(st.root); err != nil {
		return nil, err
	}
	if v.Timestamp, err = copyMetadata(st.timestamp); err != nil {
		return nil, err
	}
	if v.Snapshot, err = copyMetadata(st.snapshot); err != nil {
		return nil, err
	}
	return v, nil
}

func copyMetadata[T metadata.Roles](m *metadata.Metadata[T]) (*metadata.Metadata[T], error) {
	b, err := m.ToBytes(false)
	if err != nil {
		return nil, &Error{Category: ErrMalformed, Detail: "copying verified metadata", Err: err}
	}
	out, err := (&metadata.Metadata[T]{}).FromBytes(b)
	if err != nil {
		return nil, &Error{Category: ErrMalformed, Detail: "copying verified metadata", Err: err}
	}
	return out, nil
}

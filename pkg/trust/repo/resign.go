package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
)

// ResignOptions configure Resign.
type ResignOptions struct {
	// Client reads the published repository; its trusted root decides
	// what verifies. Resign refreshes it first.
	Client *trust.Client
	// Dest is where the repository is published and the new files are
	// written: oci://<registry>/<repository> (Registry writes it) or the
	// directory PublishDir wrote (its metadata/ is written).
	Dest     string
	Registry *oci.Client
	// Online is the snapshot and timestamp key (a Secret's key or a KMS
	// key); root must list it for both, with threshold 1.
	Online signing.Signer
	// Before: the timestamp (and the snapshot) are re-signed only when
	// they expire within Before (default 12 h).
	Before time.Duration
	// Expiry of the new timestamp and snapshot (zero fields: DefaultExpiry's).
	Expiry Expiry
	// Force re-signs the timestamp whatever its expiry.
	Force bool
	// Refreshed: the caller refreshed Client just before (and reports
	// what that refresh brought); Resign does not refresh it again.
	Refreshed bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Resigned is what Resign did.
type Resigned struct {
	// Resigned is false when nothing expired within Before.
	Resigned  bool              `json:"resigned"`
	Timestamp VersionExpiry     `json:"timestamp"`
	Snapshot  VersionExpiry     `json:"snapshot"`
	Written   []string          `json:"written,omitempty"`
	Refused   map[string]string `json:"refused,omitempty"`
}

// VersionExpiry is a role's version and expiry, before and after.
type VersionExpiry struct {
	From       int64     `json:"from"`
	To         int64     `json:"to"`
	Expires    time.Time `json:"expires"`
	WasExpires time.Time `json:"wasExpires"`
}

// Resign keeps the online roles of a published repository alive without
// the repository's directory: it refreshes o.Client from the published
// repository (so everything it signs is derived from metadata that
// verified against the client's trusted root), and when the verified
// timestamp expires within o.Before it signs timestamp version+1 with
// o.Online, for the verified snapshot; when the snapshot also expires
// within o.Before (or before the new timestamp would), it first signs
// snapshot version+1 listing exactly the role versions, lengths and
// hashes the verified snapshot lists (it never vouches for a role file
// the verified snapshot did not). It then writes the new snapshot (if
// any) and timestamp.json to o.Dest, after checking that o.Dest still
// holds the timestamp it verified (else ErrStale: someone published in
// between; nothing is written). Delegated roles are all loaded and
// verified too; those that do not verify are reported in Refused (clients
// refuse them; re-signing does not change that).
//
// A timestamp that has already expired cannot be verified, so it is not
// re-signed (the refresh's ErrFreeze is returned): the publisher runs
// `trust accept` without proposals on the repository, then publishes.
func Resign(ctx context.Context, o ResignOptions) (*Resigned, error) {
	if o.Client == nil || o.Online == nil || o.Dest == "" {
		return nil, errors.New("resign needs a client, an online signer and a destination")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Before <= 0 {
		o.Before = 12 * time.Hour
	}
	d := DefaultExpiry()
	if o.Expiry.Timestamp > 0 {
		d.Timestamp = o.Expiry.Timestamp.Truncate(time.Second)
	}
	if o.Expiry.Snapshot > 0 {
		d.Snapshot = o.Expiry.Snapshot.Truncate(time.Second)
	}
	dst, err := newDestination(o.Dest, o.Registry)
	if err != nil {
		return nil, err
	}
	if !o.Refreshed {
		if _, err := o.Client.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("the published repository does not verify, nothing re-signed: %w", err)
		}
	}
	v, err := o.Client.Verified()
	if err != nil {
		return nil, err
	}
	now := o.Now()
	ts, snap := v.Timestamp, v.Snapshot
	out := &Resigned{
		Timestamp: VersionExpiry{From: ts.Signed.Version, To: ts.Signed.Version, Expires: ts.Signed.Expires, WasExpires: ts.Signed.Expires},
		Snapshot:  VersionExpiry{From: snap.Signed.Version, To: snap.Signed.Version, Expires: snap.Signed.Expires, WasExpires: snap.Signed.Expires},
	}
	if !o.Force && ts.Signed.Expires.Sub(now) > o.Before {
		return out, nil
	}
	onlineID, err := KeyID(o.Online.Public())
	if err != nil {
		return nil, err
	}
	for _, role := range []string{RoleSnapshot, RoleTimestamp} {
		rr := v.Root.Signed.Roles[role]
		if rr == nil || rr.Threshold != 1 || !contains(rr.KeyIDs, onlineID) {
			return nil, &Error{Kind: ErrOnlineKey, Role: role, Key: onlineID, Detail: fmt.Sprintf("root v%d must list the online key with threshold 1", v.Root.Signed.Version)}
		}
	}
	// Every delegated role verified against this snapshot: the ones that
	// do not are reported (a timeout or an unreachable file stops here).
	if err := o.Client.LoadAll(ctx); err != nil {
		return nil, fmt.Errorf("loading the delegated roles, nothing re-signed: %w", err)
	}
	out.Refused = o.Client.Status(ctx).Refused

	t := now.UTC().Truncate(time.Second)
	newTSExpiry := t.Add(d.Timestamp)
	var snapRaw []byte
	snapMeta := ts.Signed.Meta["snapshot.json"]
	if snapMeta == nil {
		return nil, &Error{Kind: ErrNotRepo, Role: RoleTimestamp, Version: ts.Signed.Version, Detail: "the timestamp names no snapshot"}
	}
	if snap.Signed.Expires.Sub(now) <= o.Before || snap.Signed.Expires.Before(newTSExpiry) {
		ns := metadata.Snapshot(t.Add(d.Snapshot))
		ns.Signed.Version = snap.Signed.Version + 1
		ns.Signed.Meta = map[string]*metadata.MetaFiles{}
		for k, m := range snap.Signed.Meta {
			if m.Length == 0 || len(m.Hashes["sha256"]) == 0 {
				return nil, &Error{Kind: ErrMalformed, Role: RoleSnapshot, Version: snap.Signed.Version, Path: k, Detail: "a snapshot entry without length and sha256 is not re-signed"}
			}
			c := *m
			ns.Signed.Meta[k] = &c
		}
		if err := signAll(ctx, ns, []signing.Signer{o.Online}); err != nil {
			return nil, err
		}
		if snapRaw, err = ns.ToBytes(true); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(snapRaw)
		snapMeta = &metadata.MetaFiles{Version: ns.Signed.Version, Length: int64(len(snapRaw)), Hashes: metadata.Hashes{"sha256": sum[:]}}
		out.Snapshot.To, out.Snapshot.Expires = ns.Signed.Version, ns.Signed.Expires
	}
	nt := metadata.Timestamp(newTSExpiry)
	nt.Signed.Version = ts.Signed.Version + 1
	nt.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": snapMeta}
	if err := signAll(ctx, nt, []signing.Signer{o.Online}); err != nil {
		return nil, err
	}
	tsRaw, err := nt.ToBytes(true)
	if err != nil {
		return nil, err
	}
	out.Timestamp.To, out.Timestamp.Expires = nt.Signed.Version, nt.Signed.Expires

	// Only over the state verified: the destination still holds it.
	cur, err := dst.get(ctx, "timestamp.json")
	if err != nil {
		return nil, err
	}
	if err := sameTimestamp(cur, ts); err != nil {
		return nil, err
	}
	if snapRaw != nil {
		n := fmt.Sprintf("%d.snapshot.json", out.Snapshot.To)
		if have, err := dst.get(ctx, n); err != nil {
			return nil, err
		} else if have != nil {
			return nil, &Error{Kind: ErrStale, Role: RoleSnapshot, Version: out.Snapshot.To, Path: n, Detail: "already published by someone else; nothing written"}
		}
		if err := dst.put(ctx, n, snapRaw); err != nil {
			return nil, err
		}
		out.Written = append(out.Written, n)
	}
	if err := dst.put(ctx, "timestamp.json", tsRaw); err != nil {
		return out, err
	}
	out.Written = append(out.Written, "timestamp.json")
	out.Resigned = true
	return out, nil
}

// sameTimestamp checks that the published timestamp.json is the verified
// one (version and the snapshot it names).
func sameTimestamp(cur []byte, ts *metadata.Metadata[metadata.TimestampType]) error {
	if cur == nil {
		return &Error{Kind: ErrStale, Role: RoleTimestamp, Detail: "the destination has no timestamp.json"}
	}
	h, err := parseStrict(cur, false)
	if err != nil {
		return err
	}
	md, err := decode[metadata.TimestampType](cur, RoleTimestamp)
	if err != nil {
		return err
	}
	a, b := md.Signed.Meta["snapshot.json"], ts.Signed.Meta["snapshot.json"]
	if h.Version != ts.Signed.Version || a == nil || b == nil || a.Version != b.Version || a.Length != b.Length || !a.Hashes.Equal(b.Hashes) {
		return &Error{Kind: ErrStale, Role: RoleTimestamp, Version: h.Version, Detail: fmt.Sprintf("the destination's timestamp is not the v%d verified; nothing written", ts.Signed.Version)}
	}
	return nil
}

// destination is where a published repository's metadata files are read
// and written by name.
type destination interface {
	// get returns nil, nil for a file the destination does not have.
	get(ctx context.Context, file string) ([]byte, error)
	put(ctx context.Context, file string, data []byte) error
}

func newDestination(dst string, reg *oci.Client) (destination, error) {
	if trust.IsOCI(dst) {
		if reg == nil {
			var err error
			if reg, err = oci.New(oci.WithProgress(nil)); err != nil {
				return nil, err
			}
		}
		return &ociDest{reg: reg, repo: strings.TrimSuffix(strings.TrimPrefix(dst, trust.OCIScheme), "/")}, nil
	}
	if !filepath.IsAbs(dst) {
		return nil, fmt.Errorf("%s: want oci://registry/repository or an absolute directory", dst)
	}
	return dirDest(filepath.Join(dst, MetadataDir)), nil
}

type dirDest string

func (d dirDest) get(_ context.Context, file string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), file))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (d dirDest) put(_ context.Context, file string, data []byte) error {
	return signing.WriteFileAtomic(filepath.Join(string(d), file), data, 0o644)
}

type ociDest struct {
	reg  *oci.Client
	repo string
}

func (d *ociDest) tag(file string) (name.Tag, error) {
	return name.NewTag(d.repo+":"+file, name.StrictValidation)
}

func (d *ociDest) get(ctx context.Context, file string) ([]byte, error) {
	t, err := d.tag(file)
	if err != nil {
		return nil, err
	}
	b, _, err := d.reg.FetchBytes(ctx, t, 8<<20)
	if errors.Is(err, oci.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

func (d *ociDest) put(ctx context.Context, file string, data []byte) error {
	t, err := d.tag(file)
	if err != nil {
		return err
	}
	_, err = d.reg.PushBytes(ctx, t, data, trust.ArtifactType, trust.LayerType, file)
	return err
}

// Follow reads the timestamp published at dst (a directory or oci://, as
// for Resign) and, when the online re-signer published versions above the
// repository's, numbers the next snapshot and timestamp (Accept, Tick)
// above them, so that publishing afterwards is not a rollback. Only the
// version numbers are taken (never content), so an unverified or forged
// file can at most make versions skip; a jump of more than a million
// versions is refused.
func (r *Repo) Follow(ctx context.Context, dst string, reg *oci.Client) error {
	d, err := newDestination(dst, reg)
	if err != nil {
		return err
	}
	b, err := d.get(ctx, "timestamp.json")
	if err != nil || b == nil {
		return err
	}
	md, err := decode[metadata.TimestampType](b, RoleTimestamp)
	if err != nil {
		return err
	}
	sm := md.Signed.Meta["snapshot.json"]
	if sm == nil {
		return &Error{Kind: ErrMalformed, Role: RoleTimestamp, Version: md.Signed.Version, Detail: "the published timestamp names no snapshot"}
	}
	const maxJump = 1_000_000
	if md.Signed.Version > r.st.timestamp.Signed.Version+maxJump || sm.Version > r.st.snapshot.Signed.Version+maxJump {
		return &Error{Kind: ErrVersion, Role: RoleTimestamp, Version: md.Signed.Version, Detail: fmt.Sprintf("the published timestamp (snapshot v%d) is more than %d versions above this repository's", sm.Version, maxJump)}
	}
	r.follow.timestamp = max(r.follow.timestamp, md.Signed.Version)
	r.follow.snapshot = max(r.follow.snapshot, sm.Version)
	return nil
}

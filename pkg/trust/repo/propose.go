package repo

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/signing"
)

// A proposal is signed role metadata in TUF's own format (a targets file
// carries its role name in the signed x-stepseal-role field): co-signers sign
// copies, and Accept merges and checks them.

// Delegation is a team role to delegate.
type Delegation struct {
	// Parent is the delegating role: "targets" or a team role.
	Parent string
	// Name is the new role's name, [a-z0-9][a-z0-9-]{0,62}.
	Name string
	// Paths are the patterns the role may sign: literal segments and
	// whole-segment "*" ("oci/registry.example.com/payments/*").
	Paths []string
	// Keys are the role's developers' public keys; Threshold of them must
	// sign each version (default 1).
	Keys      []crypto.PublicKey
	Threshold int
	// NonTerminating lets clients search later siblings for a path this role
	// does not list. Delegations are terminating by default.
	NonTerminating bool
}

// current returns a copy of role's current metadata (nil if it has none).
func (r *Repo) current(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	b, ok := r.st.raws[role]
	if !ok {
		return nil, nil
	}
	return decode[metadata.TargetsType](b, role)
}

// next returns role's metadata for its next version: a copy of the current
// one (or a new empty one), version bumped, expiry renewed, signatures
// cleared.
func (r *Repo) next(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	md, err := r.current(role)
	if err != nil {
		return nil, err
	}
	exp := expires(r.now(), r.cfg.expiry().Targets)
	if md == nil {
		md = metadata.Targets(exp)
		md.Signed.Version = 0
	}
	md.Signed.Version++
	md.Signed.Expires = exp
	if md.Signed.UnrecognizedFields == nil {
		md.Signed.UnrecognizedFields = map[string]any{}
	}
	md.Signed.UnrecognizedFields[RoleField] = role
	md.ClearSignatures()
	return md, nil
}

// finish checks a proposal's content against the current state (as Accept
// will, except signatures), signs it and returns its bytes.
func (r *Repo) finish(ctx context.Context, role string, md *metadata.Metadata[metadata.TargetsType], signers []signing.Signer) ([]byte, error) {
	d := r.st.delegationOf(role)
	if d == nil {
		return nil, &Error{Kind: ErrNotDelegated, Role: role, Version: md.Signed.Version}
	}
	if err := checkTargetsContent(r.st, role, md, d); err != nil {
		return nil, err
	}
	if err := signAll(ctx, md, signers); err != nil {
		return nil, err
	}
	return md.ToBytes(true)
}

// Delegate proposes the parent's next version with a new terminating team
// delegation, signed by signers (the parent's keys; co-signers add theirs
// with SignProposal). It refuses, naming the role and the conflicting
// pattern or parent, what Accept would refuse: a bad or reserved name,
// patterns overlapping a sibling's, a role that already has a parent, a cycle.
func (r *Repo) Delegate(ctx context.Context, d Delegation, signers ...signing.Signer) ([]byte, error) {
	if d.Parent == "" {
		d.Parent = RoleTargets
	}
	if err := CheckRoleName(d.Name); err != nil {
		return nil, err
	}
	if d.Threshold == 0 {
		d.Threshold = 1
	}
	md, err := r.next(d.Parent)
	if err != nil {
		return nil, err
	}
	if md.Signed.Delegations == nil {
		md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	dr := metadata.DelegatedRole{Name: d.Name, Threshold: d.Threshold, Terminating: !d.NonTerminating, Paths: d.Paths}
	for _, pub := range d.Keys {
		k, err := TUFKey(pub)
		if err != nil {
			return nil, err
		}
		id, err := k.ID()
		if err != nil {
			return nil, err
		}
		md.Signed.Delegations.Keys[id] = k
		dr.KeyIDs = append(dr.KeyIDs, id)
	}
	for _, e := range md.Signed.Delegations.Roles {
		if e.Name == d.Name {
			return nil, &Error{Kind: ErrDelegation, Role: d.Name, Conflict: "role " + d.Parent, Detail: "already delegated; rotate or revoke its keys instead"}
		}
	}
	md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, dr)
	return r.finish(ctx, d.Parent, md, signers)
}

// Target is what a release binds a path to. For an OCI artifact
// oci/<registry>/<repository>:<tag> it is the manifest's digest and size.
type Target struct {
	SHA256 string // hex
	Length int64
	Custom json.RawMessage
}

// Release proposes role's next version with path set to t (added or
// replaced), signed by the developer's signers — offline: it needs only this
// repository's (or a published copy's) metadata. An empty path re-signs the
// role's current targets at the next version (after a key rotation).
func (r *Repo) Release(ctx context.Context, role, path string, t Target, signers ...signing.Signer) ([]byte, error) {
	if role != RoleTargets {
		if err := CheckRoleName(role); err != nil {
			return nil, err
		}
	}
	md, err := r.next(role)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := CheckTargetPath(path); err != nil {
			return nil, err
		}
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil || len(sum) != 32 {
			return nil, &Error{Kind: ErrMalformed, Role: role, Path: path, Detail: "sha256 must be 64 hex digits"}
		}
		if t.Length <= 0 {
			return nil, &Error{Kind: ErrMalformed, Role: role, Path: path, Detail: "length must be > 0"}
		}
		tf := &metadata.TargetFiles{Path: path, Length: t.Length, Hashes: metadata.Hashes{"sha256": sum}}
		if len(t.Custom) > 0 {
			c := t.Custom
			tf.Custom = &c
		}
		if md.Signed.Targets == nil {
			md.Signed.Targets = map[string]*metadata.TargetFiles{}
		}
		md.Signed.Targets[path] = tf
	}
	return r.finish(ctx, role, md, signers)
}

// Remove proposes role's next version without path.
func (r *Repo) Remove(ctx context.Context, role, path string, signers ...signing.Signer) ([]byte, error) {
	md, err := r.next(role)
	if err != nil {
		return nil, err
	}
	if md.Signed.Targets[path] == nil {
		return nil, &Error{Kind: ErrMalformed, Role: role, Path: path, Detail: "no such target"}
	}
	delete(md.Signed.Targets, path)
	return r.finish(ctx, role, md, signers)
}

// delegatorOf returns the parent's next version and the index of role's
// delegation in it.
func (r *Repo) delegatorOf(role string) (*metadata.Metadata[metadata.TargetsType], int, error) {
	p := r.st.parentOf(role)
	if p == "" {
		return nil, 0, &Error{Kind: ErrNotDelegated, Role: role}
	}
	md, err := r.next(p)
	if err != nil {
		return nil, 0, err
	}
	for i, dr := range md.Signed.Delegations.Roles {
		if dr.Name == role {
			return md, i, nil
		}
	}
	return nil, 0, &Error{Kind: ErrNotDelegated, Role: role}
}

// dropUnusedKey removes key id from the delegations' keys if no role lists
// it any more.
func dropUnusedKey(d *metadata.Delegations, id string) {
	for _, dr := range d.Roles {
		if contains(dr.KeyIDs, id) {
			return
		}
	}
	delete(d.Keys, id)
}

// RotateKey proposes the delegator's next version with oldKeyID replaced by
// newKey in role's delegation, signed by the delegator's signers. Publish it
// together with role re-signed by the new key (Release with an empty path),
// in one Accept: the role's targets stay available throughout.
func (r *Repo) RotateKey(ctx context.Context, role, oldKeyID string, newKey crypto.PublicKey, signers ...signing.Signer) ([]byte, error) {
	md, i, err := r.delegatorOf(role)
	if err != nil {
		return nil, err
	}
	k, err := TUFKey(newKey)
	if err != nil {
		return nil, err
	}
	newID, err := k.ID()
	if err != nil {
		return nil, err
	}
	dr := &md.Signed.Delegations.Roles[i]
	if !contains(dr.KeyIDs, oldKeyID) {
		return nil, &Error{Kind: ErrDelegation, Role: role, Key: oldKeyID, Detail: "not one of the role's keys"}
	}
	if contains(dr.KeyIDs, newID) {
		return nil, &Error{Kind: ErrDelegation, Role: role, Key: newID, Detail: "already one of the role's keys"}
	}
	for j, id := range dr.KeyIDs {
		if id == oldKeyID {
			dr.KeyIDs[j] = newID
		}
	}
	md.Signed.Delegations.Keys[newID] = k
	dropUnusedKey(md.Signed.Delegations, oldKeyID)
	return r.finish(ctx, r.st.parentOf(role), md, signers)
}

// Revocation is one entry of a delegator's x-stepseal-revocations: which key
// of which role was revoked in which version of the delegator.
type Revocation struct {
	Role    string `json:"role"`
	KeyID   string `json:"keyid"`
	Version int64  `json:"version"`
	Reason  string `json:"reason,omitempty"`
	Date    string `json:"date"`
}

// RevokeKey proposes the delegator's next version without keyID in role's
// delegation, recording the revocation in the signed x-stepseal-revocations
// field. The role keeps its snapshot entry; if its current metadata no
// longer meets the threshold, clients refuse it until it is re-signed.
// Revoking below the threshold is refused: rotate instead.
func (r *Repo) RevokeKey(ctx context.Context, role, keyID, reason string, signers ...signing.Signer) ([]byte, error) {
	md, i, err := r.delegatorOf(role)
	if err != nil {
		return nil, err
	}
	dr := &md.Signed.Delegations.Roles[i]
	if !contains(dr.KeyIDs, keyID) {
		return nil, &Error{Kind: ErrDelegation, Role: role, Key: keyID, Detail: "not one of the role's keys"}
	}
	if len(dr.KeyIDs)-1 < dr.Threshold {
		return nil, &Error{Kind: ErrDelegation, Role: role, Key: keyID, Detail: fmt.Sprintf("would leave %d keys for threshold %d; rotate the key instead", len(dr.KeyIDs)-1, dr.Threshold)}
	}
	var ids []string
	for _, id := range dr.KeyIDs {
		if id != keyID {
			ids = append(ids, id)
		}
	}
	dr.KeyIDs = ids
	dropUnusedKey(md.Signed.Delegations, keyID)
	var list []any
	if old, ok := md.Signed.UnrecognizedFields[RevocationsField].([]any); ok {
		list = old
	}
	rec := Revocation{Role: role, KeyID: keyID, Version: md.Signed.Version, Reason: reason, Date: r.now().UTC().Truncate(time.Second).Format(time.RFC3339)}
	var m map[string]any
	rb, _ := json.Marshal(rec)
	_ = json.Unmarshal(rb, &m)
	md.Signed.UnrecognizedFields[RevocationsField] = append(list, m)
	return r.finish(ctx, r.st.parentOf(role), md, signers)
}

// SignProposal adds signer's signature to a proposal (a co-signer's step).
// The signed content is unchanged; a key that already signed is refused.
func SignProposal(ctx context.Context, proposal []byte, s signing.Signer) ([]byte, error) {
	h, err := parseStrict(proposal, true)
	if err != nil {
		return nil, err
	}
	id, err := KeyID(s.Public())
	if err != nil {
		return nil, err
	}
	switch h.Type {
	case RoleTargets:
		return cosign[metadata.TargetsType](ctx, proposal, h, id, s)
	case RoleRoot:
		return cosign[metadata.RootType](ctx, proposal, h, id, s)
	}
	return nil, &Error{Kind: ErrUnsupported, Role: h.Role, Detail: "only targets and root are proposed"}
}

func cosign[T metadata.Roles](ctx context.Context, b []byte, h header, id string, s signing.Signer) ([]byte, error) {
	md, err := decode[T](b, h.Role)
	if err != nil {
		return nil, err
	}
	for _, sig := range md.Signatures {
		if sig.KeyID == id {
			return nil, &Error{Kind: ErrProposal, Role: h.Role, Version: h.Version, Key: id, Detail: "already signed by this key"}
		}
	}
	if err := signAll(ctx, md, []signing.Signer{s}); err != nil {
		return nil, err
	}
	return md.ToBytes(true)
}

// RootChange is a root rotation: keys added to or removed from top-level
// roles, and new thresholds.
type RootChange struct {
	Add        map[string][]crypto.PublicKey // role → keys to add
	Remove     map[string][]string           // role → key IDs to remove
	Thresholds map[string]int                // role → new threshold
}

// RotateRoot proposes root's next version with change applied, signed by
// signers. Accept takes it once it carries a threshold of the current root's
// keys and a threshold of the new root's keys (co-signers use SignProposal).
func (r *Repo) RotateRoot(ctx context.Context, change RootChange, signers ...signing.Signer) ([]byte, error) {
	md, err := decode[metadata.RootType](r.st.rootRaw, RoleRoot)
	if err != nil {
		return nil, err
	}
	for role, ids := range change.Remove {
		for _, id := range ids {
			if err := md.Signed.RevokeKey(id, role); err != nil {
				return nil, &Error{Kind: ErrDelegation, Role: role, Key: id, Detail: err.Error()}
			}
		}
	}
	for role, keys := range change.Add {
		for _, pub := range keys {
			k, err := TUFKey(pub)
			if err != nil {
				return nil, err
			}
			if err := md.Signed.AddKey(k, role); err != nil {
				return nil, &Error{Kind: ErrDelegation, Role: role, Detail: err.Error()}
			}
		}
	}
	for role, t := range change.Thresholds {
		rr := md.Signed.Roles[role]
		if rr == nil {
			return nil, &Error{Kind: ErrRoleName, Role: role, Detail: "not a top-level role"}
		}
		rr.Threshold = t
	}
	for name, rr := range md.Signed.Roles {
		if rr.Threshold < 1 || rr.Threshold > len(rr.KeyIDs) {
			return nil, &Error{Kind: ErrDelegation, Role: name, Detail: fmt.Sprintf("threshold %d for %d keys", rr.Threshold, len(rr.KeyIDs))}
		}
	}
	md.Signed.Version++
	md.Signed.Expires = expires(r.now(), r.cfg.expiry().Root)
	md.ClearSignatures()
	if err := signAll(ctx, md, signers); err != nil {
		return nil, err
	}
	return md.ToBytes(true)
}

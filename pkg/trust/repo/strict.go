package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stepseal/stepseal/pkg/trust"
)

// MaxMetadataSize caps every metadata file the repository reads: a
// proposal, a role file on disk. go-tuf decodes a file four or five times, so
// a cap keeps a hostile proposal from costing the publisher more than a few
// hundred milliseconds.
const MaxMetadataSize = 8 << 20

// RoleField is the signed field naming a targets file's role: a targets
// file does not otherwise say which role it is, and the signature binds it.
const RoleField = "x-stepseal-role"

// RevocationsField is the signed field of a delegating role that records
// revoked keys, so clients can say which key was revoked in which version.
const RevocationsField = trust.RevocationsField

var specVersionRE = regexp.MustCompile(`^1\.[0-9]{1,4}(\.[0-9]{1,4})?$`)

// expiresRE is the spec's expiry format: whole seconds, UTC (go-tuf would
// write and accept nanoseconds, which other clients refuse).
var expiresRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$`)

// header is what strict parsing learns before go-tuf sees the bytes.
type header struct {
	Type    string
	Role    string
	Version int64
}

// parseStrict checks raw metadata bytes before go-tuf parses them (go-tuf
// v2.4.2 panics on some nulls and accepts any spec_version), with the
// client's guard (trust.CheckJSON, trust.CheckMetadata: one strict-JSON rule
// for the repository and its clients) and the repository's own rules: size
// cap, valid UTF-8 JSON without duplicate keys, null outside "custom" or a
// byte order mark, exactly "signed" and "signatures", spec_version 1.x, a
// known _type, an integral version in [1, 2^53], an expiry in whole
// seconds UTC, the role field of a targets file, then the client's
// structural checks of the role's fields. A proposal (proposal true) of
// snapshot or timestamp is refused as ErrUnsupported: the publisher signs
// those.
func parseStrict(b []byte, proposal bool) (header, error) {
	var h header
	if len(b) > MaxMetadataSize {
		return h, &Error{Kind: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, cap %d", len(b), MaxMetadataSize)}
	}
	if err := trust.CheckJSON(b); err != nil {
		return h, &Error{Kind: ErrMalformed, Detail: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return h, &Error{Kind: ErrMalformed, Detail: "not a JSON object"}
	}
	if len(top) != 2 || top["signed"] == nil || top["signatures"] == nil {
		return h, &Error{Kind: ErrMalformed, Detail: `want exactly "signed" and "signatures"`}
	}
	signed, ok := top["signed"].(map[string]any)
	if !ok {
		return h, &Error{Kind: ErrMalformed, Detail: `"signed" is not an object`}
	}
	if _, ok := top["signatures"].([]any); !ok {
		return h, &Error{Kind: ErrMalformed, Detail: `"signatures" is not an array`}
	}
	h.Type, _ = signed["_type"].(string)
	switch h.Type {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
	default:
		return h, &Error{Kind: ErrMalformed, Detail: fmt.Sprintf("unknown _type %q", h.Type)}
	}
	sv, _ := signed["spec_version"].(string)
	if !specVersionRE.MatchString(sv) {
		return h, &Error{Kind: ErrUnsupported, Detail: fmt.Sprintf("spec_version %q, want 1.x", sv)}
	}
	if e, _ := signed["expires"].(string); !expiresRE.MatchString(e) {
		return h, &Error{Kind: ErrMalformed, Detail: fmt.Sprintf("expires %q, want YYYY-MM-DDTHH:MM:SSZ", e)}
	}
	n, ok := signed["version"].(json.Number)
	if !ok {
		return h, &Error{Kind: ErrMalformed, Detail: "version is not a number"}
	}
	v, err := n.Int64()
	if err != nil || v < 1 || v > 1<<53 {
		return h, &Error{Kind: ErrMalformed, Detail: fmt.Sprintf("version %s is not an integer in [1, 2^53]", n)}
	}
	h.Version = v
	if r, ok := signed[RoleField]; ok {
		s, ok := r.(string)
		if !ok {
			return h, &Error{Kind: ErrMalformed, Detail: RoleField + " is not a string"}
		}
		h.Role = s
	}
	if h.Type != RoleTargets {
		if h.Role != "" && h.Role != h.Type {
			return h, &Error{Kind: ErrMalformed, Role: h.Role, Detail: "role does not match _type " + h.Type}
		}
		h.Role = h.Type
	}
	if h.Role == "" {
		return h, &Error{Kind: ErrMalformed, Version: v, Detail: "targets metadata without " + RoleField}
	}
	if proposal && h.Type != RoleTargets && h.Type != RoleRoot {
		return h, &Error{Kind: ErrUnsupported, Role: h.Role, Version: v, Detail: "snapshot and timestamp are signed by the publisher, not proposed"}
	}
	if err := trust.CheckMetadata(h.Type, b, MaxMetadataSize); err != nil {
		return h, fromGuard(err, v)
	}
	return h, nil
}

// fromGuard maps an error of the client's guard onto the repository's
// kinds: a role's keys or threshold → ErrDelegation naming that role (and
// key), two signatures by one key → ErrProposal, a role delegated twice by
// one delegator → ErrDiamond, too large, unsupported and everything else
// (malformed) → the same kind here.
func fromGuard(err error, version int64) error {
	var rk *trust.RoleKeysError
	if errors.As(err, &rk) {
		return &Error{Kind: ErrDelegation, Role: rk.Role, Key: rk.Key, Detail: rk.Detail}
	}
	kind := ErrMalformed
	switch {
	case errors.Is(err, trust.ErrTooLarge):
		kind = ErrTooLarge
	case errors.Is(err, trust.ErrUnsupported):
		kind = ErrUnsupported
	case errors.Is(err, trust.ErrUnsigned):
		kind = ErrProposal
	case errors.Is(err, trust.ErrDiamondDelegation):
		kind = ErrDiamond
	}
	e := &Error{Kind: kind, Version: version, Detail: err.Error()}
	var te *trust.Error
	if errors.As(err, &te) && len(te.KeyIDs) == 1 {
		e.Key = te.KeyIDs[0]
	}
	return e
}

// decode parses checked bytes with go-tuf, turning its panics into
// ErrMalformed.
func decode[T metadata.Roles](b []byte, role string) (md *metadata.Metadata[T], err error) {
	defer func() {
		if r := recover(); r != nil {
			md, err = nil, &Error{Kind: ErrMalformed, Role: role, Detail: fmt.Sprintf("go-tuf: %v", r)}
		}
	}()
	md, err = new(metadata.Metadata[T]).FromBytes(b)
	if err != nil {
		return nil, &Error{Kind: ErrMalformed, Role: role, Detail: err.Error()}
	}
	return md, nil
}

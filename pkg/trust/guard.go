package trust

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Size caps. go-tuf's own caps apply too; these bound what stepseal reads
// before go-tuf sees a byte.
const (
	maxRootSize      = 512_000
	maxTimestampSize = 16_384
	// DefaultMaxRoleSize caps snapshot.json, targets.json and every
	// delegated role, whatever length the metadata that names them claims.
	DefaultMaxRoleSize = 8 << 20
	maxJSONDepth       = 64
)

// roleNameRE is stepseal's rule for delegated role names: safe in URLs,
// file names and OCI tags, no separators, no escaping needed.
var roleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// specVersionRE accepts TUF specification 1.x only.
var specVersionRE = regexp.MustCompile(`^1\.[0-9]{1,4}(\.[0-9]{1,4})?$`)

var topLevelRoles = map[string]bool{"root": true, "timestamp": true, "snapshot": true, "targets": true}

// ValidRoleName reports whether name may be a delegated role of a stepseal
// repository: [a-z0-9][a-z0-9-]{0,62} and not a top-level role's name.
func ValidRoleName(name string) bool { return roleNameRE.MatchString(name) && !topLevelRoles[name] }

// The strict schema of the TUF formats stepseal reads. Pointers tell a
// missing field from a zero one; unknown fields are allowed (the spec
// permits them and real repositories use them) but never null.
type (
	mdEnvelope struct {
		Signed     *mdSigned      `json:"signed"`
		Signatures *[]mdSignature `json:"signatures"`
	}
	// mdSigned is the union of the four roles' fields (no name is used by
	// two roles with different types), decoded in one pass.
	mdSigned struct {
		mdCommon
		mdRoot
		mdMetaRole
		mdTargets
	}
	mdSignature struct {
		KeyID *string `json:"keyid"`
		Sig   *string `json:"sig"`
	}
	mdCommon struct {
		Type        *string `json:"_type"`
		SpecVersion *string `json:"spec_version"`
		Version     *int64  `json:"version"`
		Expires     *string `json:"expires"`
	}
	mdKey struct {
		KeyType *string `json:"keytype"`
		Scheme  *string `json:"scheme"`
		KeyVal  *struct {
			Public *string `json:"public"`
		} `json:"keyval"`
	}
	mdRole struct {
		KeyIDs    *[]string `json:"keyids"`
		Threshold *int64    `json:"threshold"`
	}
	mdRoot struct {
		ConsistentSnapshot *bool              `json:"consistent_snapshot"`
		Keys               *map[string]mdKey  `json:"keys"`
		Roles              *map[string]mdRole `json:"roles"`
	}
	mdMeta struct {
		Version *int64             `json:"version"`
		Length  *int64             `json:"length"`
		Hashes  *map[string]string `json:"hashes"`
	}
	mdMetaRole struct {
		Meta *map[string]mdMeta `json:"meta"`
	}
	mdTarget struct {
		Length *int64             `json:"length"`
		Hashes *map[string]string `json:"hashes"`
	}
	mdDelegatedRole struct {
		Name             *string   `json:"name"`
		KeyIDs           *[]string `json:"keyids"`
		Threshold        *int64    `json:"threshold"`
		Terminating      *bool     `json:"terminating"`
		Paths            *[]string `json:"paths"`
		PathHashPrefixes *[]string `json:"path_hash_prefixes"`
	}
	mdDelegations struct {
		Keys          *map[string]mdKey  `json:"keys"`
		Roles         *[]mdDelegatedRole `json:"roles"`
		SuccinctRoles *json.RawMessage   `json:"succinct_roles"`
	}
	mdTargets struct {
		Targets     *map[string]mdTarget `json:"targets"`
		Delegations *mdDelegations       `json:"delegations"`
	}
)

// typeOf is the _type a file of role must have.
func typeOf(role string) string {
	switch role {
	case "root", "timestamp", "snapshot":
		return role
	}
	return "targets"
}

// maxSizeOf is the size cap of role's files.
func maxSizeOf(role string, maxRole int64) int64 {
	switch role {
	case "root":
		return maxRootSize
	case "timestamp":
		return maxTimestampSize
	}
	return maxRole
}

// checkMetadata is the guard in front of go-tuf: it refuses any byte of
// data that is not well-formed TUF metadata of role's type, before go-tuf
// parses it (go-tuf v2.4.2 panics on null entries and on a timestamp
// without snapshot meta, and accepts any spec_version). It checks
// structure only: signatures, versions and expiry are go-tuf's job.
func checkMetadata(role string, data []byte, maxSize int64) error {
	if int64(len(data)) > maxSize {
		return &Error{Category: ErrTooLarge, Role: role, Detail: fmt.Sprintf("%d bytes, more than the cap of %d", len(data), maxSize)}
	}
	// One validity pass, not two: json.Unmarshal checks the whole input
	// before it decodes, so when it succeeds the bytes are valid JSON and
	// scanJSON needs no json.Valid of its own. The errors are checkJSON's,
	// in checkJSON's order (FuzzGuardOrder compares with that order).
	if err := checkText(data); err != nil {
		return &Error{Category: ErrMalformed, Role: role, Detail: err.Error()}
	}
	var env mdEnvelope
	uerr := json.Unmarshal(data, &env)
	if uerr != nil && !json.Valid(data) {
		var v any
		return &Error{Category: ErrMalformed, Role: role, Detail: fmt.Sprintf("invalid JSON: %v", json.Unmarshal(data, &v))}
	}
	if err := scanJSON(data); err != nil {
		return &Error{Category: ErrMalformed, Role: role, Detail: err.Error()}
	}
	if uerr != nil {
		return malformed(role, "%v", uerr)
	}
	if env.Signed == nil || env.Signatures == nil {
		return malformed(role, "signed and signatures are required")
	}
	seen := map[string]bool{}
	for i, s := range *env.Signatures {
		if s.KeyID == nil || s.Sig == nil || *s.KeyID == "" {
			return malformed(role, "signature %d: keyid and sig are required", i)
		}
		if seen[*s.KeyID] {
			return &Error{Category: ErrUnsigned, Role: role, Detail: "more than one signature by the same key", KeyIDs: []string{*s.KeyID}}
		}
		seen[*s.KeyID] = true
		if _, err := hex.DecodeString(*s.Sig); err != nil {
			return malformed(role, "signature by %s is not hex", *s.KeyID)
		}
	}
	c := env.Signed.mdCommon
	if c.Type == nil || c.SpecVersion == nil || c.Version == nil || c.Expires == nil {
		return malformed(role, "_type, spec_version, version and expires are required")
	}
	if want := typeOf(role); *c.Type != want {
		return malformed(role, "_type %q, want %q", *c.Type, want)
	}
	if !specVersionRE.MatchString(*c.SpecVersion) {
		return &Error{Category: ErrUnsupported, Role: role, Version: *c.Version, Detail: fmt.Sprintf("spec_version %q: only TUF 1.x is supported", *c.SpecVersion)}
	}
	if *c.Version < 1 {
		return malformed(role, "version %d < 1", *c.Version)
	}
	if _, err := time.Parse(time.RFC3339, *c.Expires); err != nil {
		return malformed(role, "expires %q is not RFC 3339", *c.Expires)
	}
	var err error
	switch *c.Type {
	case "root":
		err = checkRoot(&env.Signed.mdRoot)
	case "timestamp":
		err = checkMeta(&env.Signed.mdMetaRole, true)
	case "snapshot":
		err = checkMeta(&env.Signed.mdMetaRole, false)
	case "targets":
		err = checkTargets(&env.Signed.mdTargets)
	}
	if err != nil {
		var te *Error
		if errors.As(err, &te) {
			te.Role, te.Version = role, *c.Version
			return te
		}
		var rk *RoleKeysError
		if errors.As(err, &rk) {
			return &Error{Category: ErrMalformed, Role: role, Version: *c.Version, Err: err}
		}
		return &Error{Category: ErrMalformed, Role: role, Version: *c.Version, Detail: err.Error()}
	}
	return nil
}

func malformed(role, format string, args ...any) *Error {
	return newErr(ErrMalformed, role, format, args...)
}

func endsLiteral(b byte) bool {
	switch b {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// checkJSON refuses invalid UTF-8, a byte order mark, invalid JSON (and
// data after the value), duplicate object keys, nesting deeper than
// maxJSONDepth and null outside "custom". One pass over bytes json.Valid
// accepted; FuzzCheckJSON compares it with a json.Decoder-based walk.
func checkJSON(data []byte) error {
	if err := checkText(data); err != nil {
		return err
	}
	if !json.Valid(data) {
		var v any
		return fmt.Errorf("invalid JSON: %v", json.Unmarshal(data, &v))
	}
	return scanJSON(data)
}

// checkText refuses invalid UTF-8 and a byte order mark.
func checkText(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("invalid UTF-8")
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return errors.New("byte order mark")
	}
	return nil
}

// smallObject is how many keys an object may have before scanJSON looks
// its keys up in a map rather than comparing them one by one.
const smallObject = 16

// scanFrame is an open object or array of scanJSON.
type scanFrame struct {
	obj       bool
	custom    bool // the container is inside a custom value
	expectKey bool
	valCustom bool   // an object's next value is inside a custom value
	key       []byte // an object's current key, unescaped
	keysFrom  int    // where an object's keys start in scanJSON's keys
	set       map[string]struct{}
}

// scanJSON is checkJSON's walk over bytes known to be valid JSON (the
// caller has checked with json.Valid or a successful json.Unmarshal): no
// duplicate keys, depth at most maxJSONDepth, no null outside "custom".
// Keys are compared as subslices of data (unescaped ones apart); only
// objects of more than smallObject keys allocate, a map.
func scanJSON(data []byte) error {
	var stack []scanFrame
	var keys [][]byte // the keys of the open small objects, outermost first
	inCustom := func() bool {
		if len(stack) == 0 {
			return false
		}
		if top := &stack[len(stack)-1]; top.obj {
			return top.valCustom
		} else {
			return top.custom
		}
	}
	where := func() string {
		if len(stack) == 0 || !stack[len(stack)-1].obj {
			return fmt.Sprintf("depth %d", len(stack))
		}
		return fmt.Sprintf("key %q", string(stack[len(stack)-1].key))
	}
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			if top := &stack[len(stack)-1]; top.obj {
				top.expectKey = true
			}
			i++
		case '{', '[':
			if len(stack) > maxJSONDepth {
				return fmt.Errorf("nested deeper than %d", maxJSONDepth)
			}
			stack = append(stack, scanFrame{obj: c == '{', custom: inCustom(), expectKey: c == '{', keysFrom: len(keys)})
			i++
		case '}', ']':
			keys = keys[:stack[len(stack)-1].keysFrom]
			stack = stack[:len(stack)-1]
			i++
		case '"':
			j := i + 1
			for data[j] != '"' {
				if data[j] == '\\' {
					j++
				}
				j++
			}
			j++
			if len(stack) > 0 && stack[len(stack)-1].obj && stack[len(stack)-1].expectKey {
				f := &stack[len(stack)-1]
				k := data[i+1 : j-1]
				if bytes.IndexByte(k, '\\') >= 0 {
					var s string
					if err := json.Unmarshal(data[i:j], &s); err != nil {
						return fmt.Errorf("invalid key: %v", err)
					}
					k = []byte(s)
				}
				if f.set != nil {
					if _, dup := f.set[string(k)]; dup {
						return fmt.Errorf("duplicate key %q", string(k))
					}
					f.set[string(k)] = struct{}{}
				} else {
					for _, o := range keys[f.keysFrom:] {
						if bytes.Equal(o, k) {
							return fmt.Errorf("duplicate key %q", string(k))
						}
					}
					keys = append(keys, k)
					if len(keys)-f.keysFrom > smallObject {
						f.set = make(map[string]struct{}, 2*smallObject)
						for _, o := range keys[f.keysFrom:] {
							f.set[string(o)] = struct{}{}
						}
						keys = keys[:f.keysFrom]
					}
				}
				f.expectKey, f.key, f.valCustom = false, k, f.custom || string(k) == "custom"
			} else if len(stack) > maxJSONDepth {
				return fmt.Errorf("nested deeper than %d", maxJSONDepth)
			}
			i = j
		default: // a number, true, false or null
			if len(stack) > maxJSONDepth {
				return fmt.Errorf("nested deeper than %d", maxJSONDepth)
			}
			if c == 'n' && !inCustom() {
				return fmt.Errorf("null at %s", where())
			}
			for i < len(data) && !endsLiteral(data[i]) {
				i++
			}
		}
	}
	return nil
}

func checkKeys(keys map[string]mdKey) error {
	for id, k := range keys {
		if k.KeyType == nil || k.Scheme == nil || k.KeyVal == nil || k.KeyVal.Public == nil {
			return fmt.Errorf("key %s: keytype, scheme and keyval.public are required", id)
		}
		pub := *k.KeyVal.Public
		switch *k.KeyType {
		case "ed25519":
			if b, err := hex.DecodeString(pub); err != nil || len(b) != 32 || *k.Scheme != "ed25519" {
				return fmt.Errorf("key %s: ed25519 key must be 32 bytes of hex with scheme ed25519", id)
			}
		case "ecdsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384":
			if *k.Scheme != "ecdsa-sha2-nistp256" && *k.Scheme != "ecdsa-sha2-nistp384" {
				return &Error{Category: ErrUnsupported, Detail: fmt.Sprintf("key %s: ecdsa scheme %q", id, *k.Scheme)}
			}
			if !strings.Contains(pub, "-----BEGIN PUBLIC KEY-----") {
				return fmt.Errorf("key %s: ecdsa key is not a PEM public key", id)
			}
		case "rsa":
			if *k.Scheme != "rsassa-pss-sha256" {
				return &Error{Category: ErrUnsupported, Detail: fmt.Sprintf("key %s: rsa scheme %q", id, *k.Scheme)}
			}
			if !strings.Contains(pub, "-----BEGIN PUBLIC KEY-----") {
				return fmt.Errorf("key %s: rsa key is not a PEM public key", id)
			}
		default:
			return &Error{Category: ErrUnsupported, Detail: fmt.Sprintf("key %s: key type %q", id, *k.KeyType)}
		}
	}
	return nil
}

func checkRoleKeys(name string, keyIDs *[]string, threshold *int64, keys map[string]mdKey) error {
	if keyIDs == nil || threshold == nil {
		return &RoleKeysError{Role: name, Detail: "keyids and threshold are required"}
	}
	if *threshold < 1 || *threshold > int64(len(*keyIDs)) {
		return &RoleKeysError{Role: name, Detail: fmt.Sprintf("threshold %d with %d keys", *threshold, len(*keyIDs))}
	}
	var ids map[string]bool // only for long lists: short ones are compared one by one
	if len(*keyIDs) > smallObject {
		ids = make(map[string]bool, len(*keyIDs))
	}
	for i, id := range *keyIDs {
		if _, ok := keys[id]; !ok {
			return &RoleKeysError{Role: name, Key: id, Detail: "key is not in keys"}
		}
		if ids != nil {
			if ids[id] {
				return &RoleKeysError{Role: name, Key: id, Detail: "key listed twice"}
			}
			ids[id] = true
		} else if slices.Contains((*keyIDs)[:i], id) {
			return &RoleKeysError{Role: name, Key: id, Detail: "key listed twice"}
		}
	}
	return nil
}

func checkRoot(r *mdRoot) error {
	if r.ConsistentSnapshot == nil || r.Keys == nil || r.Roles == nil {
		return errors.New("consistent_snapshot, keys and roles are required")
	}
	if err := checkKeys(*r.Keys); err != nil {
		return err
	}
	for name := range topLevelRoles {
		role, ok := (*r.Roles)[name]
		if !ok {
			return fmt.Errorf("role %s missing", name)
		}
		if err := checkRoleKeys(name, role.KeyIDs, role.Threshold, *r.Keys); err != nil {
			return err
		}
	}
	return nil
}

func checkHashes(h *map[string]string, required bool) error {
	if h == nil {
		if required {
			return errors.New("hashes are required")
		}
		return nil
	}
	if len(*h) == 0 {
		return errors.New("empty hashes")
	}
	for alg, v := range *h {
		if _, err := hex.DecodeString(v); err != nil || v == "" {
			return fmt.Errorf("hash %s is not hex", alg)
		}
	}
	return nil
}

func checkMeta(m *mdMetaRole, timestamp bool) error {
	if m.Meta == nil {
		return errors.New("meta is required")
	}
	if timestamp {
		if _, ok := (*m.Meta)["snapshot.json"]; !ok || len(*m.Meta) != 1 {
			return errors.New("timestamp meta must name snapshot.json only")
		}
	} else if _, ok := (*m.Meta)["targets.json"]; !ok {
		return errors.New("snapshot meta must name targets.json")
	}
	for name, e := range *m.Meta {
		base, ok := strings.CutSuffix(name, ".json")
		// Names are data here: the client never makes a file name of a
		// role outside ValidRoleName (see loadDelegations).
		if !ok || base == "" {
			return fmt.Errorf("meta name %q", name)
		}
		if e.Version == nil || *e.Version < 1 {
			return fmt.Errorf("meta %s: version >= 1 is required", name)
		}
		if e.Length != nil && *e.Length < 0 {
			return fmt.Errorf("meta %s: negative length", name)
		}
		if err := checkHashes(e.Hashes, false); err != nil {
			return fmt.Errorf("meta %s: %v", name, err)
		}
	}
	return nil
}

func checkTargets(t *mdTargets) error {
	if t.Targets == nil {
		return errors.New("targets is required")
	}
	for path, e := range *t.Targets {
		if path == "" || strings.ContainsRune(path, 0) {
			return fmt.Errorf("target path %q", path)
		}
		if e.Length == nil || *e.Length < 0 {
			return fmt.Errorf("target %s: length >= 0 is required", path)
		}
		if err := checkHashes(e.Hashes, true); err != nil {
			return fmt.Errorf("target %s: %v", path, err)
		}
	}
	d := t.Delegations
	if d == nil {
		return nil
	}
	if d.SuccinctRoles != nil {
		return &Error{Category: ErrUnsupported, Detail: "succinct_roles (hash bins) are not supported"}
	}
	if d.Keys == nil || d.Roles == nil {
		return errors.New("delegations: keys and roles are required")
	}
	if err := checkKeys(*d.Keys); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, r := range *d.Roles {
		if r.Name == nil || *r.Name == "" {
			return fmt.Errorf("delegation %d: name is required", i)
		}
		if names[*r.Name] {
			return &Error{Category: ErrDiamondDelegation, Detail: fmt.Sprintf("role %q delegated twice by one delegator", *r.Name)}
		}
		names[*r.Name] = true
		if r.Terminating == nil {
			return fmt.Errorf("delegation %s: terminating is required", *r.Name)
		}
		if (r.Paths == nil) == (r.PathHashPrefixes == nil) {
			return fmt.Errorf("delegation %s: exactly one of paths and path_hash_prefixes", *r.Name)
		}
		if err := checkRoleKeys(*r.Name, r.KeyIDs, r.Threshold, *d.Keys); err != nil {
			return err
		}
	}
	return nil
}

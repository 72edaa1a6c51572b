package trust

import "fmt"

// CheckMetadata is the client's guard (the check every metadata byte passes
// before go-tuf parses it), for the repository side to use on proposals and
// files on disk: one strict-JSON rule for both. role names the file's role
// ("root", "timestamp", "snapshot", "targets" or a delegated role, which
// must then be of _type targets); maxSize caps its length. It refuses, as
// an *Error: more than maxSize bytes (ErrTooLarge); invalid UTF-8, a byte
// order mark, invalid JSON, duplicate object keys, nesting deeper than 64,
// null outside "custom", missing or mistyped required fields, a _type
// other than role's (ErrMalformed); a spec_version other than 1.x, unknown
// key types, succinct hash bins (ErrUnsupported); two signatures by one key
// (ErrUnsigned); a role delegated twice by one delegator
// (ErrDiamondDelegation). It checks structure only, not signatures,
// versions or expiry.
func CheckMetadata(role string, data []byte, maxSize int64) error {
	return checkMetadata(role, data, maxSize)
}

// CheckJSON is the guard's JSON rule alone, for bytes whose role is not
// known yet: valid UTF-8, no byte order mark, valid JSON with nothing after
// the value, no duplicate object keys, nesting at most 64 deep, no null
// outside "custom". The error says what and where.
func CheckJSON(data []byte) error { return checkJSON(data) }

// RoleKeysError is the Err of a CheckMetadata error (ErrMalformed) about
// the keys or threshold of one role, a top-level role in root or a
// delegated role in a targets file's delegations: which role, which key
// when one key is at fault, and what is wrong (keyids or threshold
// missing, a threshold below 1 or above the number of keys, a key ID
// listed twice or absent from keys).
type RoleKeysError struct {
	Role   string
	Key    string
	Detail string
}

func (e *RoleKeysError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("role %s: key %s: %s", e.Role, e.Key, e.Detail)
	}
	return fmt.Sprintf("role %s: %s", e.Role, e.Detail)
}

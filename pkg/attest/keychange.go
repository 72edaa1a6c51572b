package attest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/mod/sumdb/note"
)

// Key-change readme directives: how a layout rotates and revokes
// functionary keys. Like the other directives they are lines of the signed
// readme, so plain in-toto-golang still verifies the layout (it ignores the
// readme; a rotated-out key stays among the steps' keys for it, a revoked
// one is removed from them).
const (
	// ReadmeKeyRotated starts a line recording that a functionary key was
	// rotated out: a KeyRotation as one line of JSON. What the key signed
	// before the rotation stays valid, for stepseal, only when the
	// transparency log the line names holds it below the recorded tree size.
	ReadmeKeyRotated = ReadmeDirectivePrefix + "key-rotated: "
	// ReadmeKeyRevoked starts a line recording that a functionary key was
	// revoked: a KeyRevocation as one line of JSON. Everything it signed is
	// refused.
	ReadmeKeyRevoked = ReadmeDirectivePrefix + "key-revoked: "
)

// KeyRotation is what a layout says of a rotated-out functionary key.
type KeyRotation struct {
	// KeyID is the rotated-out in-toto key ID.
	KeyID string `json:"keyid"`
	// NewKeyID is the key that replaced it in the steps it was in.
	NewKeyID string `json:"newKeyid"`
	// Log anchors the validity window: a link signed by KeyID counts only
	// if this log holds it at an index below Log.Size.
	Log LogAnchor `json:"log"`
}

// LogAnchor names a transparency log and one tree of it, signed by the
// log's key: the owners sign it into the layout, so neither a functionary
// nor whoever holds the log's key can later move an entry below Size.
type LogAnchor struct {
	// Key is the log's public note key ("<origin>+<hash>+<data>").
	Key string `json:"key"`
	// Size is the log's tree size at the rotation.
	Size uint64 `json:"size"`
	// Checkpoint is the log's signed checkpoint of that tree, as its note
	// text: it fixes the tree's root hash and so every entry below Size.
	Checkpoint string `json:"checkpoint"`
}

// Origin is the log's name: the key's first field.
func (a LogAnchor) Origin() string {
	o, _, _ := strings.Cut(a.Key, "+")
	return o
}

// KeyRevocation is what a layout says of a revoked functionary key.
type KeyRevocation struct {
	// KeyID is the revoked in-toto key ID.
	KeyID string `json:"keyid"`
	// Reason is why, as the owners wrote it.
	Reason string `json:"reason"`
}

// KeyRotatedLine returns the readme line recording r, ending in a newline.
func KeyRotatedLine(r KeyRotation) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	j, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return ReadmeKeyRotated + string(j) + "\n", nil
}

// KeyRevokedLine returns the readme line recording r, ending in a newline.
func KeyRevokedLine(r KeyRevocation) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	j, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return ReadmeKeyRevoked + string(j) + "\n", nil
}

// checkKeyID accepts an in-toto key ID: 64 lowercase hex digits.
func checkKeyID(what, id string) error {
	if len(id) != 64 || strings.ContainsFunc(id, func(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }) {
		return fmt.Errorf("%s %q is not an in-toto key ID (64 lowercase hex digits)", what, id)
	}
	return nil
}

func (r KeyRotation) check() error {
	if err := checkKeyID("keyid", r.KeyID); err != nil {
		return err
	}
	if err := checkKeyID("newKeyid", r.NewKeyID); err != nil {
		return err
	}
	if r.KeyID == r.NewKeyID {
		return fmt.Errorf("key %.8s is rotated to itself", r.KeyID)
	}
	if r.Log.Size == 0 {
		return fmt.Errorf("key %.8s: the log's tree size at the rotation is 0: nothing it signed could be shown to come before it", r.KeyID)
	}
	if _, err := note.NewVerifier(r.Log.Key); err != nil || strings.ContainsFunc(r.Log.Key, unicode.IsSpace) {
		return fmt.Errorf("key %.8s: log key %q is not a note verifier key <origin>+<hash>+<data>", r.KeyID, r.Log.Key)
	}
	if !strings.HasPrefix(r.Log.Checkpoint, r.Log.Origin()+"\n") {
		return fmt.Errorf("key %.8s: the checkpoint is not one of log %q", r.KeyID, r.Log.Origin())
	}
	return nil
}

func (r KeyRevocation) check() error {
	if err := checkKeyID("keyid", r.KeyID); err != nil {
		return err
	}
	if strings.TrimSpace(r.Reason) == "" || strings.ContainsFunc(r.Reason, unicode.IsControl) {
		return fmt.Errorf("key %.8s: a revocation needs a reason of one line", r.KeyID)
	}
	return nil
}

// parseKeyRotation decodes one key-rotated line's JSON strictly.
func parseKeyRotation(s string) (KeyRotation, error) {
	var r KeyRotation
	if err := decodeLine(s, &r); err != nil {
		return KeyRotation{}, err
	}
	return r, r.check()
}

// parseKeyRevocation decodes one key-revoked line's JSON strictly.
func parseKeyRevocation(s string) (KeyRevocation, error) {
	var r KeyRevocation
	if err := decodeLine(s, &r); err != nil {
		return KeyRevocation{}, err
	}
	return r, r.check()
}

func decodeLine(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// addKeyChange adds a rotation or revocation to d unless its key already
// has one: a key is rotated once, and a revoked key is not also rotated.
func addKeyChange(d *ReadmeDirectives, rot *KeyRotation, rev *KeyRevocation) error {
	id := ""
	if rot != nil {
		id = rot.KeyID
	} else {
		id = rev.KeyID
	}
	for _, r := range d.Rotated {
		if r.KeyID == id {
			return fmt.Errorf("key %.8s already has a key-rotated line", id)
		}
	}
	for _, r := range d.Revoked {
		if r.KeyID == id {
			return fmt.Errorf("key %.8s already has a key-revoked line", id)
		}
	}
	if rot != nil {
		d.Rotated = append(d.Rotated, *rot)
	} else {
		d.Revoked = append(d.Revoked, *rev)
	}
	return nil
}

// Rotation returns the rotation recorded for key id, if any.
func (d ReadmeDirectives) Rotation(id string) (KeyRotation, bool) {
	for _, r := range d.Rotated {
		if r.KeyID == id {
			return r, true
		}
	}
	return KeyRotation{}, false
}

// Revocation returns the revocation recorded for key id, if any.
func (d ReadmeDirectives) Revocation(id string) (KeyRevocation, bool) {
	for _, r := range d.Revoked {
		if r.KeyID == id {
			return r, true
		}
	}
	return KeyRevocation{}, false
}

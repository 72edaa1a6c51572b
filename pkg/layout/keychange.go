package layout

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
)

// RotateKey returns l with functionary key oldID rotated out for newKey:
// newKey joins every step (and skippable rule) oldID is in, oldID stays
// there so that what it signed before the rotation still verifies (for
// in-toto-golang, and for stepseal with the log's evidence), and the readme
// gains a stepseal.dev/key-rotated line naming the log tree that bounds
// that window (attest.KeyRotation). The result still needs the owners'
// signatures (Sign).
func RotateKey(l in_toto.Layout, oldID string, newKey in_toto.Key, anchor attest.LogAnchor) (in_toto.Layout, error) {
	d, err := attest.ParseReadme(l.Readme)
	if err != nil {
		return in_toto.Layout{}, fmt.Errorf("%w: readme: %v", ErrLayout, err)
	}
	if err := changeable(l, d, oldID); err != nil {
		return in_toto.Layout{}, err
	}
	if _, ok := d.Rotation(newKey.KeyID); ok {
		return in_toto.Layout{}, fmt.Errorf("%w: new key %.8s was itself rotated out of this layout", ErrLayout, newKey.KeyID)
	}
	if _, ok := d.Revocation(newKey.KeyID); ok {
		return in_toto.Layout{}, fmt.Errorf("%w: new key %.8s is revoked in this layout", ErrLayout, newKey.KeyID)
	}
	line, err := attest.KeyRotatedLine(attest.KeyRotation{KeyID: oldID, NewKeyID: newKey.KeyID, Log: anchor})
	if err != nil {
		return in_toto.Layout{}, fmt.Errorf("%w: %v", ErrLayout, err)
	}
	out := clone(l)
	out.Keys[newKey.KeyID] = newKey
	for i := range out.Steps {
		s := &out.Steps[i]
		if slices.Contains(s.PubKeys, oldID) && !slices.Contains(s.PubKeys, newKey.KeyID) {
			s.PubKeys = append(s.PubKeys, newKey.KeyID)
		}
	}
	readme, err := editSkipRules(out.Readme, func(r *attest.SkipRule) {
		if slices.Contains(r.Keys, oldID) && !slices.Contains(r.Keys, newKey.KeyID) {
			r.Keys = append(r.Keys, newKey.KeyID)
			if slices.Contains(r.SkipOnlyKeys, oldID) {
				r.SkipOnlyKeys = append(r.SkipOnlyKeys, newKey.KeyID)
			}
		}
	}, "")
	if err != nil {
		return in_toto.Layout{}, err
	}
	out.Readme = withLine(readme, line)
	return out, Validate(out)
}

// RevokeKey returns l with functionary key id revoked: it leaves every
// step and skippable rule (so in-toto-golang refuses its links too), any
// rotation of it is dropped, and the readme gains a stepseal.dev/key-revoked
// line with the reason, so stepseal names the revocation when it refuses
// what the key signed. A step left with fewer keys than its threshold is an
// error: rotate a new key in first.
func RevokeKey(l in_toto.Layout, id, reason string) (in_toto.Layout, error) {
	d, err := attest.ParseReadme(l.Readme)
	if err != nil {
		return in_toto.Layout{}, fmt.Errorf("%w: readme: %v", ErrLayout, err)
	}
	if _, ok := d.Revocation(id); ok {
		return in_toto.Layout{}, fmt.Errorf("%w: key %.8s is already revoked in this layout", ErrLayout, id)
	}
	if _, ok := l.Keys[id]; !ok {
		return in_toto.Layout{}, fmt.Errorf("%w: key %.8s is not a key of the layout", ErrLayout, id)
	}
	line, err := attest.KeyRevokedLine(attest.KeyRevocation{KeyID: id, Reason: reason})
	if err != nil {
		return in_toto.Layout{}, fmt.Errorf("%w: %v", ErrLayout, err)
	}
	out := clone(l)
	delete(out.Keys, id)
	var short []string
	for i := range out.Steps {
		s := &out.Steps[i]
		s.PubKeys = slices.DeleteFunc(s.PubKeys, func(k string) bool { return k == id })
		if len(s.PubKeys) < s.Threshold {
			short = append(short, fmt.Sprintf("%s (threshold %d, %d key(s) left)", s.Name, s.Threshold, len(s.PubKeys)))
		}
	}
	if len(short) > 0 {
		return in_toto.Layout{}, fmt.Errorf("%w: revoking key %.8s leaves too few keys for step(s) %s: rotate a new key in first (stepseal layout rotate-key)", ErrLayout, id, strings.Join(short, ", "))
	}
	readme, err := editSkipRules(out.Readme, func(r *attest.SkipRule) {
		r.Keys = slices.DeleteFunc(r.Keys, func(k string) bool { return k == id })
		r.SkipOnlyKeys = slices.DeleteFunc(r.SkipOnlyKeys, func(k string) bool { return k == id })
	}, id)
	if err != nil {
		return in_toto.Layout{}, err
	}
	out.Readme = withLine(readme, line)
	return out, Validate(out)
}

// changeable checks that id is a functionary key of l that was neither
// rotated out nor revoked.
func changeable(l in_toto.Layout, d attest.ReadmeDirectives, id string) error {
	if _, ok := l.Keys[id]; !ok {
		return fmt.Errorf("%w: key %.8s is not a key of the layout", ErrLayout, id)
	}
	if !slices.ContainsFunc(l.Steps, func(s in_toto.Step) bool { return slices.Contains(s.PubKeys, id) }) {
		return fmt.Errorf("%w: key %.8s performs no step of the layout", ErrLayout, id)
	}
	if _, ok := d.Rotation(id); ok {
		return fmt.Errorf("%w: key %.8s was already rotated out of this layout", ErrLayout, id)
	}
	if _, ok := d.Revocation(id); ok {
		return fmt.Errorf("%w: key %.8s is revoked in this layout", ErrLayout, id)
	}
	return nil
}

// editSkipRules rewrites the readme's skippable lines with edit and drops
// the key-rotated line of dropRotated (when not ""); a rule left without
// keys is an error. Other lines are kept as they are.
func editSkipRules(readme string, edit func(*attest.SkipRule), dropRotated string) (string, error) {
	lines := strings.Split(readme, "\n")
	kept := lines[:0]
	for _, line := range lines {
		if rest, ok := strings.CutPrefix(line, attest.ReadmeKeyRotated); ok && dropRotated != "" {
			var r attest.KeyRotation
			if json.Unmarshal([]byte(rest), &r) == nil && r.KeyID == dropRotated {
				continue
			}
		}
		if rest, ok := strings.CutPrefix(line, attest.ReadmeSkippable); ok {
			var r attest.SkipRule
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return "", fmt.Errorf("%w: readme: %v", ErrLayout, err)
			}
			edit(&r)
			if len(r.Keys) == 0 {
				return "", fmt.Errorf("%w: skippable task %s would have no key left to sign its skip records", ErrLayout, r.Task)
			}
			l, err := attest.SkippableLines([]attest.SkipRule{r})
			if err != nil {
				return "", err
			}
			line = strings.TrimSuffix(l, "\n")
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n"), nil
}

// withLine appends a directive line (ending in a newline) to readme.
func withLine(readme, line string) string {
	if readme != "" && !strings.HasSuffix(readme, "\n") {
		readme += "\n"
	}
	return readme + line
}

// clone copies what RotateKey and RevokeKey change: the keys, the steps'
// key lists.
func clone(l in_toto.Layout) in_toto.Layout {
	out := l
	out.Keys = make(map[string]in_toto.Key, len(l.Keys))
	for k, v := range l.Keys {
		out.Keys[k] = v
	}
	out.Steps = slices.Clone(l.Steps)
	for i := range out.Steps {
		out.Steps[i].PubKeys = slices.Clone(out.Steps[i].PubKeys)
	}
	return out
}

// Resign applies change to the layout of mb and returns the result signed
// by owners (Sign). Before anything is signed, mb must carry a valid
// signature by at least one of owners: the owners re-sign only a layout
// they signed before, not whatever file they were handed.
func Resign(ctx context.Context, mb *in_toto.Metablock, owners []signing.Signer, change func(in_toto.Layout) (in_toto.Layout, error)) (*in_toto.Metablock, error) {
	l, ok := mb.Signed.(in_toto.Layout)
	if !ok {
		return nil, fmt.Errorf("%w: metablock holds %T, not a layout", ErrLayout, mb.Signed)
	}
	signed := false
	var ids []string
	for _, o := range owners {
		k, err := signing.InTotoKey(o.Public())
		if err != nil {
			return nil, err
		}
		ids = append(ids, fmt.Sprintf("%.8s", k.KeyID))
		if mb.VerifySignature(k) == nil {
			signed = true
		}
	}
	if !signed {
		return nil, fmt.Errorf("%w: the layout carries no valid signature by any owner key given (%s): only a layout its owners signed is changed and re-signed", ErrLayout, strings.Join(ids, " "))
	}
	out, err := change(l)
	if err != nil {
		return nil, err
	}
	return Sign(ctx, out, owners...)
}

// Revocations returns the functionary keys the signed layout data revokes
// (its stepseal.dev/key-revoked readme lines, as RevokeKey writes them):
// what a consumer of a summary made against an earlier version of the
// layout looks its inputs' signers up in. The layout is parsed as Parse
// does; its signatures are not checked here (TUF vouches for the bytes).
func Revocations(data []byte) ([]attest.KeyRevocation, error) {
	mb, err := Parse(data)
	if err != nil {
		return nil, err
	}
	l, ok := mb.Signed.(in_toto.Layout)
	if !ok {
		return nil, fmt.Errorf("%w: not a layout", ErrLayout)
	}
	d, err := attest.ParseReadme(l.Readme)
	if err != nil {
		return nil, fmt.Errorf("%w: readme: %v", ErrLayout, err)
	}
	return d.Revoked, nil
}

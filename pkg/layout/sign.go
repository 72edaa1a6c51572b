package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/internal/limited"
	"github.com/stepseal/stepseal/pkg/signing"
)

// MaxLayoutSize bounds a layout file read by Load. A 50-step layout is tens of
// kilobytes; anything near this is a mistake or an attack.
const MaxLayoutSize = 16 << 20

// Sign validates layout and wraps it in a Metablock signed by every owner, in
// the order given. Verifiers decide how many owner signatures they require.
func Sign(ctx context.Context, layout in_toto.Layout, owners ...signing.Signer) (*in_toto.Metablock, error) {
	if len(owners) == 0 {
		return nil, fmt.Errorf("%w: no owner key to sign the layout with", ErrLayout)
	}
	if err := Validate(layout); err != nil {
		return nil, err
	}
	mb := &in_toto.Metablock{Signed: layout, Signatures: []in_toto.Signature{}}
	seen := map[string]bool{}
	for _, o := range owners {
		id, err := o.KeyID()
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: owner key %.8s given twice", ErrLayout, id)
		}
		seen[id] = true
		if err := signing.SignMetablock(ctx, mb, o); err != nil {
			return nil, fmt.Errorf("signing layout with owner key %.8s: %w", id, err)
		}
	}
	return mb, nil
}

// Write stores a signed layout at path as indented JSON, atomically: the file
// appears complete or not at all. The result is what in-toto-golang's
// `in-toto verify -l` reads.
func Write(path string, mb *in_toto.Metablock) error {
	if mb == nil {
		return fmt.Errorf("%w: nothing to write", ErrLayout)
	}
	if _, ok := mb.Signed.(in_toto.Layout); !ok {
		return fmt.Errorf("%w: %s: metablock holds %T, not a layout", ErrLayout, path, mb.Signed)
	}
	data, err := json.MarshalIndent(mb, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrLayout, path, err)
	}
	return signing.WriteFileAtomic(path, append(data, '\n'), 0o644)
}

// Load reads a signed layout (an in-toto Metablock holding a layout) written by
// Write or by in-toto's tooling. It reads at most MaxLayoutSize bytes, rejects
// unknown fields and DSSE envelopes, and validates the layout. It does not
// check signatures: that is the verifier's job.
func Load(path string) (*in_toto.Metablock, error) {
	data, err := limited.ReadFile(path, MaxLayoutSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLayout, err)
	}
	mb, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mb, nil
}

// Parse decodes a signed layout; see Load.
func Parse(data []byte) (*in_toto.Metablock, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %w", ErrLayout, err)
	}
	if _, ok := top["payloadType"]; ok {
		return nil, fmt.Errorf("%w: a DSSE envelope; stepseal layouts are in-toto Metablocks {signed, signatures}", ErrLayout)
	}
	for k := range top {
		if k != "signed" && k != "signatures" {
			return nil, fmt.Errorf("%w: unknown field %q (want signed and signatures)", ErrLayout, k)
		}
	}
	if isNull(top["signed"]) || isNull(top["signatures"]) {
		return nil, fmt.Errorf("%w: signed and signatures are required", ErrLayout)
	}
	var signed map[string]json.RawMessage
	if err := json.Unmarshal(top["signed"], &signed); err != nil {
		return nil, fmt.Errorf("%w: signed: %w", ErrLayout, err)
	}
	var typ string
	if err := json.Unmarshal(signed["_type"], &typ); err != nil || typ != "layout" {
		return nil, fmt.Errorf("%w: signed._type is not \"layout\"", ErrLayout)
	}
	// in-toto-golang requires every non-omitempty field to be present.
	for _, k := range []string{"steps", "inspect", "keys", "expires", "readme"} {
		if _, ok := signed[k]; !ok {
			return nil, fmt.Errorf("%w: signed.%s is required", ErrLayout, k)
		}
	}
	var l in_toto.Layout
	if err := strictUnmarshal(top["signed"], &l); err != nil {
		return nil, fmt.Errorf("%w: signed: %w", ErrLayout, err)
	}
	var sigs []in_toto.Signature
	if err := strictUnmarshal(top["signatures"], &sigs); err != nil {
		return nil, fmt.Errorf("%w: signatures: %w", ErrLayout, err)
	}
	if err := Validate(l); err != nil {
		return nil, err
	}
	mb := &in_toto.Metablock{Signed: l, Signatures: sigs}
	if err := in_toto.ValidateMetablock(*mb); err != nil {
		return nil, fmt.Errorf("%w: signatures: %s", ErrLayout, oneLine(err.Error()))
	}
	return mb, nil
}

func isNull(r json.RawMessage) bool {
	return len(bytes.TrimSpace(r)) == 0 || string(bytes.TrimSpace(r)) == "null"
}

func strictUnmarshal(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

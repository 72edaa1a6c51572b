package witness

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// ErrNotWitnessed: a checkpoint that does not carry enough valid
// cosignatures of the witnesses a policy names (reject.ErrThreshold, a
// refusal). The *Error says how many were valid and which were expected.
var ErrNotWitnessed = reject.Sentinel(reject.ErrThreshold, "checkpoint not cosigned by enough witnesses")

// Witness is one witness of a policy.
type Witness struct {
	// Name is the witness key's name (the cosignature line's signer).
	Name string
	// Verifier checks its cosignature/v1 signatures.
	Verifier note.Verifier
	// URL is where the log submits checkpoints (empty in a client's
	// policy built from keys).
	URL string
}

// Policy is which witnesses must cosign a checkpoint.
type Policy struct {
	group     tessera.WitnessGroup
	witnesses []Witness
	rule      string
}

// ParsePolicy reads a witness policy file in Tessera's format (Sigsum's
// policy format with C2SP vkeys):
//
//	witness NAME VKEY URL
//	group NAME THRESHOLD|any|all MEMBER...
//	quorum NAME
//
// The server submits checkpoints to the URLs; a client reading the same
// file checks only the keys. A quorum of "none" is refused: a policy that
// requires nothing protects nothing.
func ParsePolicy(data []byte) (*Policy, error) {
	g, err := tessera.NewWitnessGroupFromPolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%w: witness policy: %w", reject.ErrMalformed, err)
	}
	// A group of threshold 0 is satisfied by anything, also inside another
	// group: a policy that a note with no cosignature satisfies protects
	// nothing.
	if g.N <= 0 || g.Satisfied([]byte("no cosignature")) {
		return nil, fmt.Errorf("%w: witness policy: quorum is satisfied without any witness", reject.ErrMalformed)
	}
	p := &Policy{group: g}
	for u, v := range g.Endpoints() {
		p.witnesses = append(p.witnesses, Witness{Name: v.Name(), Verifier: v, URL: strings.TrimSuffix(u, "/add-checkpoint")})
	}
	slices.SortFunc(p.witnesses, func(a, b Witness) int { return strings.Compare(a.Name, b.Name) })
	p.rule = describe(g)
	return p, nil
}

// ReadPolicy reads a policy file (see ParsePolicy).
func ReadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// NewPolicy is the policy "threshold of these witnesses", each given by its
// vkey (<name>+<hash>+<key>, an Ed25519 note key or a cosignature/v1 key;
// Tessera's NewWitness reads it with transparency-dev/formats' cosignature/v1
// verifier), or by a file holding one.
func NewPolicy(threshold int, vkeys ...string) (*Policy, error) {
	if len(vkeys) == 0 {
		return nil, fmt.Errorf("%w: witness policy: no witness key", reject.ErrMalformed)
	}
	if threshold < 1 || threshold > len(vkeys) {
		return nil, fmt.Errorf("%w: witness threshold %d with %d witness keys: want 1 to %d", reject.ErrMalformed, threshold, len(vkeys), len(vkeys))
	}
	p := &Policy{}
	members := make([]tessera.Witness, 0, len(vkeys))
	for _, k := range vkeys {
		k = strings.TrimSpace(k)
		if !strings.Contains(k, "+") {
			b, err := os.ReadFile(k)
			if err != nil {
				return nil, fmt.Errorf("witness key %q: neither a vkey nor a readable file: %w", k, err)
			}
			k = strings.TrimSpace(string(b))
		}
		w, err := tessera.NewWitness(k, &url.URL{})
		if err != nil {
			return nil, fmt.Errorf("%w: witness key %.80q: %w", reject.ErrMalformed, k, err)
		}
		for _, o := range p.witnesses {
			if o.Name == w.Key.Name() && o.Verifier.KeyHash() == w.Key.KeyHash() {
				return nil, fmt.Errorf("%w: witness key %s given twice", reject.ErrMalformed, o.Name)
			}
		}
		members = append(members, w)
		p.witnesses = append(p.witnesses, Witness{Name: w.Key.Name(), Verifier: w.Key})
	}
	// NewWitnessGroup takes Tessera's unexported component interface;
	// build it through the policy parser's own group type instead.
	g := tessera.WitnessGroup{N: threshold}
	for _, m := range members {
		g.Components = append(g.Components, m)
	}
	p.group = g
	p.rule = describe(g)
	return p, nil
}

// Group is the policy as Tessera's witness group, for the log server.
func (p *Policy) Group() tessera.WitnessGroup { return p.group }

// Witnesses are the policy's witnesses, ordered by name.
func (p *Policy) Witnesses() []Witness { return slices.Clone(p.witnesses) }

// String says what the policy requires, e.g. "1 of [w1.example w2.example]".
func (p *Policy) String() string { return p.rule }

// describe renders a group: "K of [a b (2 of [c d])]".
func describe(g tessera.WitnessGroup) string {
	var parts []string
	for _, c := range g.Components {
		switch c := any(c).(type) {
		case tessera.Witness:
			parts = append(parts, c.Key.Name())
		case tessera.WitnessGroup:
			parts = append(parts, "("+describe(c)+")")
		}
	}
	return fmt.Sprintf("%d of [%s]", g.N, strings.Join(parts, " "))
}

// Error is a checkpoint refused for too few valid cosignatures.
type Error struct {
	// Checkpoint names the checkpoint (origin@size(root prefix)).
	Checkpoint string
	// Policy is what was required (Policy.String).
	Policy string
	// Valid names the witnesses whose cosignature verified; Invalid those
	// whose line is there but does not verify over this checkpoint.
	Valid, Invalid []string
	// Expected names every witness of the policy.
	Expected []string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: checkpoint %s has %d valid cosignatures (%s) of the witnesses expected [%s]; the policy requires %s",
		ErrNotWitnessed, e.Checkpoint, len(e.Valid), strings.Join(e.Valid, " "), strings.Join(e.Expected, " "), e.Policy)
	if len(e.Invalid) > 0 {
		msg += fmt.Sprintf("; cosignatures that do not verify: %s", strings.Join(e.Invalid, " "))
	}
	return msg
}

// Is matches ErrNotWitnessed, reject.ErrThreshold and reject.ErrRefused.
func (e *Error) Is(target error) bool {
	return target == ErrNotWitnessed || reject.Matches(reject.ErrThreshold, target)
}

// Cosigned says which of the policy's witnesses validly cosigned raw (a
// signed note) and which have a cosignature line that does not verify
// (another key under the witness's name and key hash, an altered
// signature, a signature over another checkpoint). It does not check the
// log's own signature.
func (p *Policy) Cosigned(raw []byte) (valid, invalid []string) {
	for _, w := range p.witnesses {
		n, err := note.Open(raw, note.VerifierList(w.Verifier))
		var unverified *note.UnverifiedNoteError
		switch {
		case err == nil && len(n.Sigs) == 1:
			valid = append(valid, w.Name)
		case errors.As(err, &unverified):
		default:
			invalid = append(invalid, w.Name)
		}
	}
	return valid, invalid
}

// Check verifies that raw, a checkpoint signed by the log (checked by the
// caller), carries cosignatures satisfying the policy: *Error (matching
// ErrNotWitnessed) if not. name names the checkpoint in the error.
func (p *Policy) Check(raw []byte, name string) error {
	if p.group.Satisfied(raw) {
		return nil
	}
	valid, invalid := p.Cosigned(raw)
	expected := make([]string, len(p.witnesses))
	for i, w := range p.witnesses {
		expected[i] = w.Name
	}
	return &Error{Checkpoint: name, Policy: p.rule, Valid: valid, Invalid: invalid, Expected: expected}
}

// CheckCheckpoint implements tlog.CheckpointPolicy.
func (p *Policy) CheckCheckpoint(cp tlog.Checkpoint) error {
	return p.Check(cp.Raw, cp.String())
}

package witness

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	f_note "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"

	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// ErrNotWitnessed: a checkpoint that does not carry enough valid
// cosignatures of the witnesses a policy names (reject.ErrThreshold, a
// refusal). The *Error says how many were valid and which were expected.
var ErrNotWitnessed = reject.Sentinel(reject.ErrThreshold, "checkpoint not cosigned by enough witnesses")

// ErrStale: a checkpoint whose witnesses cosigned it, but too long ago for
// the policy's Freshness (reject.ErrExpired, a refusal): without enough
// cosignatures newer than MaxAge it does not satisfy the policy. A C2SP
// cosignature/v1 states that, as of its timestamp, this was the largest
// tree the witness had seen; an old one says nothing about the log since,
// so a log that froze a client's view (hiding newer entries) is caught.
var ErrStale = reject.Sentinel(reject.ErrExpired, "witness cosignatures too old")

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
	fresh     Freshness

	// mu guards memo, the cosignatures found on the last checkpoint
	// checked: a client sees the same checkpoint on every answer of a
	// burst, and only its age changes.
	mu   sync.Mutex
	memo *cosigned
}

// StaleAction is what a Freshness does with a checkpoint that satisfies
// the policy only by counting cosignatures older than MaxAge.
type StaleAction string

const (
	// StaleRefuse: the checkpoint is refused with ErrStale.
	StaleRefuse StaleAction = "refuse"
	// StaleWarn: the checkpoint is accepted and Freshness.Warn is told.
	StaleWarn StaleAction = "warn"
)

// Freshness bounds the age of the cosignatures counted toward a policy,
// read from each C2SP cosignature/v1 line's timestamp (the time the
// witness signed). It applies to checkpoints a log shows now; a checkpoint
// kept from earlier (CheckTrusted: a client's floor, gossip, a layout's
// anchor) is judged on its cosignatures alone.
type Freshness struct {
	// MaxAge: a cosignature older than this does not count (0: no bound,
	// timestamps are not read). An honest log has its checkpoint
	// cosigned again at least every 10 minutes (Tessera republishes it),
	// so MaxAge must be longer than that.
	MaxAge time.Duration
	// Skew: a cosignature dated more than Skew after now never counts
	// (C2SP tlog-cosignature lets verifiers reject future timestamps).
	// Default 5 minutes.
	Skew time.Duration
	// Stale is StaleRefuse (the default) or StaleWarn.
	Stale StaleAction
	// Warn receives StaleWarn's message (naming the checkpoint, the
	// witnesses and their cosignatures' ages); nil drops it.
	Warn func(msg string)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultSkew is Freshness.Skew when it is 0.
const DefaultSkew = 5 * time.Minute

// WithFreshness returns a copy of p that also requires f of the
// cosignatures it counts on a checkpoint the log shows now. A Stale other
// than refuse or warn, or a negative age, is reject.ErrMalformed.
func (p *Policy) WithFreshness(f Freshness) (*Policy, error) {
	switch f.Stale {
	case "":
		f.Stale = StaleRefuse
	case StaleRefuse, StaleWarn:
	default:
		return nil, fmt.Errorf("%w: witness freshness: stale cosignatures %q: want %q or %q", reject.ErrMalformed, f.Stale, StaleRefuse, StaleWarn)
	}
	if f.MaxAge < 0 || f.Skew < 0 {
		return nil, fmt.Errorf("%w: witness freshness: negative age %v or skew %v", reject.ErrMalformed, f.MaxAge, f.Skew)
	}
	if f.Skew == 0 {
		f.Skew = DefaultSkew
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	return &Policy{group: p.group, witnesses: p.witnesses, rule: p.rule, fresh: f}, nil
}

// Freshness is the freshness p requires (MaxAge 0: none).
func (p *Policy) Freshness() Freshness { return p.fresh }

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
	// Valid names the witnesses whose cosignature verified (counted or
	// not, see Stale and Future); Invalid those whose line is there but
	// does not verify over this checkpoint.
	Valid, Invalid []string
	// Expected names every witness of the policy.
	Expected []string
	// Stale names the valid cosignatures older than the Freshness's
	// MaxAge, with their age; Future those dated beyond its Skew. Neither
	// counted.
	Stale, Future []string
	// MaxAge is the Freshness's bound (0: none).
	MaxAge time.Duration
	// OnlyStale: the cosignatures satisfy the policy when the stale ones
	// count: the error is ErrStale, not ErrNotWitnessed.
	OnlyStale bool
}

func (e *Error) Error() string {
	head := ErrNotWitnessed
	if e.OnlyStale {
		head = ErrStale
	}
	msg := fmt.Sprintf("%s: checkpoint %s has %d valid cosignatures (%s) of the witnesses expected [%s]; the policy requires %s",
		head, e.Checkpoint, len(e.Valid), strings.Join(e.Valid, " "), strings.Join(e.Expected, " "), e.Policy)
	if len(e.Stale) > 0 {
		msg += fmt.Sprintf("; older than %v, not counted: %s", e.MaxAge, strings.Join(e.Stale, " "))
	}
	if len(e.Future) > 0 {
		msg += fmt.Sprintf("; dated in the future, not counted: %s", strings.Join(e.Future, " "))
	}
	if len(e.Invalid) > 0 {
		msg += fmt.Sprintf("; cosignatures that do not verify: %s", strings.Join(e.Invalid, " "))
	}
	return msg
}

// Is matches ErrStale and reject.ErrExpired for a checkpoint refused only
// for its cosignatures' age, else ErrNotWitnessed and reject.ErrThreshold;
// both are reject.ErrRefused.
func (e *Error) Is(target error) bool {
	if e.OnlyStale {
		return target == ErrStale || reject.Matches(reject.ErrExpired, target)
	}
	return target == ErrNotWitnessed || reject.Matches(reject.ErrThreshold, target)
}

// Cosigned says which of the policy's witnesses validly cosigned raw (a
// signed note) and which have a cosignature line that does not verify
// (another key under the witness's name and key hash, an altered
// signature, a signature over another checkpoint). It does not check the
// log's own signature.
func (p *Policy) Cosigned(raw []byte) (valid, invalid []string) {
	c := p.cosignatures(raw)
	for _, s := range c.valid {
		valid = append(valid, s.name)
	}
	return valid, c.invalid
}

// cosigned is what a note carries of the policy's witnesses.
type cosigned struct {
	raw     []byte
	valid   []cosignature
	invalid []string
	// satisfied: the policy is satisfied counting every valid cosignature.
	satisfied bool
}

// cosignature is one witness's valid cosignature line and its timestamp.
type cosignature struct {
	name string
	line string
	// time is the cosignature/v1 timestamp; ok is false when it has none
	// (a witness key of another signature type).
	time time.Time
	ok   bool
}

func (p *Policy) cosignatures(raw []byte) *cosigned {
	p.mu.Lock()
	m := p.memo
	p.mu.Unlock()
	if m != nil && bytes.Equal(m.raw, raw) {
		return m
	}
	c := &cosigned{raw: bytes.Clone(raw), satisfied: p.group.Satisfied(raw)}
	for _, w := range p.witnesses {
		n, err := note.Open(raw, note.VerifierList(w.Verifier))
		var unverified *note.UnverifiedNoteError
		switch {
		case err == nil && len(n.Sigs) == 1:
			s := cosignature{name: w.Name, line: "— " + n.Sigs[0].Name + " " + n.Sigs[0].Base64 + "\n"}
			if t, err := f_note.CoSigV1Timestamp(n.Sigs[0]); err == nil {
				s.time, s.ok = t, true
			}
			c.valid = append(c.valid, s)
		case errors.As(err, &unverified):
		default:
			c.invalid = append(c.invalid, w.Name)
		}
	}
	p.mu.Lock()
	p.memo = c
	p.mu.Unlock()
	return c
}

// Check verifies that raw, a checkpoint signed by the log (checked by the
// caller) and shown by the log now, carries cosignatures satisfying the
// policy, counting only those its Freshness allows: *Error matching
// ErrNotWitnessed if not, or ErrStale if only cosignatures older than
// MaxAge would satisfy it (with StaleWarn, Warn is told instead and the
// checkpoint accepted). name names the checkpoint in the error.
func (p *Policy) Check(raw []byte, name string) error {
	return p.check(raw, name, true)
}

// CheckTrusted is Check without the Freshness: for a checkpoint kept from
// earlier (a client's floor, one gossiped by another party, a layout's
// anchor), whose cosignatures were as old as it is.
func (p *Policy) CheckTrusted(raw []byte, name string) error {
	return p.check(raw, name, false)
}

func (p *Policy) check(raw []byte, name string, fresh bool) error {
	c := p.cosignatures(raw)
	if !fresh || p.fresh.MaxAge == 0 {
		if c.satisfied {
			return nil // every answer of a burst: no allocation
		}
		return p.newError(c, name)
	}
	e := p.newError(c, name)
	// Drop the lines of cosignatures too old or dated in the future
	// and ask Tessera's group again: k-of-n is still its decision.
	now := p.fresh.Now()
	kept := raw
	for _, s := range c.valid {
		switch {
		case !s.ok || now.Sub(s.time) > p.fresh.MaxAge:
			age := "no timestamp"
			if s.ok {
				age = now.Sub(s.time).Round(time.Second).String() + " old"
			}
			e.Stale = append(e.Stale, fmt.Sprintf("%s (%s)", s.name, age))
		case s.time.Sub(now) > p.fresh.Skew:
			e.Future = append(e.Future, fmt.Sprintf("%s (%s ahead)", s.name, s.time.Sub(now).Round(time.Second)))
		default:
			continue
		}
		kept = bytes.Replace(kept, []byte(s.line), nil, 1)
	}
	e.MaxAge = p.fresh.MaxAge
	if len(e.Stale)+len(e.Future) == 0 {
		if c.satisfied {
			return nil
		}
		return e
	}
	if p.group.Satisfied(kept) {
		return nil
	}
	if !c.satisfied {
		return e
	}
	// Satisfied only with the stale (or future-dated) ones.
	if len(e.Future) == 0 {
		e.OnlyStale = true
		if p.fresh.Stale == StaleWarn {
			if p.fresh.Warn != nil {
				p.fresh.Warn(fmt.Sprintf("witness cosignatures of checkpoint %s are older than %v: %s; accepted (stale cosignatures: warn)", name, p.fresh.MaxAge, strings.Join(e.Stale, " ")))
			}
			return nil
		}
	}
	return e
}

// newError is the refusal of c's checkpoint, named name.
func (p *Policy) newError(c *cosigned, name string) *Error {
	e := &Error{Checkpoint: name, Policy: p.rule, Invalid: c.invalid}
	for _, w := range p.witnesses {
		e.Expected = append(e.Expected, w.Name)
	}
	for _, s := range c.valid {
		e.Valid = append(e.Valid, s.name)
	}
	return e
}

// CheckCheckpoint implements tlog.CheckpointPolicy: Check.
func (p *Policy) CheckCheckpoint(cp tlog.Checkpoint) error {
	return p.Check(cp.Raw, cp.String())
}

// CheckTrustedCheckpoint implements tlog.TrustedPolicy: CheckTrusted.
func (p *Policy) CheckTrustedCheckpoint(cp tlog.Checkpoint) error {
	return p.CheckTrusted(cp.Raw, cp.String())
}

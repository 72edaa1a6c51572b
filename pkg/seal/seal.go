package seal

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Previous is what an interrupted earlier attempt stored of one run, by
// kind and name. The zero value holds nothing: everything is signed anew.
type Previous struct {
	m map[string]store.Entry
}

// LoadPrevious lists what targets already hold of run runID; where two
// targets hold an entry of the same kind and name, the first one's wins.
func LoadPrevious(ctx context.Context, runID string, targets []Target) (Previous, error) {
	p := Previous{m: map[string]store.Entry{}}
	for _, t := range targets {
		if t.Store == nil {
			continue
		}
		es, err := t.Store.List(ctx, store.Filter{RunID: runID})
		if err != nil {
			return Previous{}, fmt.Errorf("backend %s: listing run %s: %w", t.Name, runID, err)
		}
		for _, e := range es {
			if _, ok := p.m[e.Kind+"/"+e.Name]; !ok {
				p.m[e.Kind+"/"+e.Name] = e
			}
		}
	}
	return p, nil
}

// PreviousOf makes a Previous of entries already at hand.
func PreviousOf(entries ...store.Entry) Previous {
	p := Previous{m: map[string]store.Entry{}}
	for _, e := range entries {
		if _, ok := p.m[e.Kind+"/"+e.Name]; !ok {
			p.m[e.Kind+"/"+e.Name] = e
		}
	}
	return p
}

func (p Previous) get(kind, name string) store.Entry { return p.m[kind+"/"+name] }

// Link returns the store entry of step's link signed by signer: the bytes
// an earlier attempt stored when they are a signed Metablock of exactly
// this link (so a retry stores the same bytes, and a provenance naming
// them stays true), else a new signature. Its subjects are the step's
// sha256 products.
func Link(ctx context.Context, rec *run.Record, step run.Step, signer signing.Signer, prev Previous) (store.Entry, error) {
	keyID, err := signer.KeyID()
	if err != nil {
		return store.Entry{}, err
	}
	link := attest.Link(rec, step)
	name := LinkName(step.Name, keyID)
	data, ok := reusableLink(prev.get(store.KindLink, name), link)
	if !ok {
		mb, err := attest.SignLink(ctx, link, signer)
		if err != nil {
			return store.Entry{}, err
		}
		if data, err = json.MarshalIndent(mb, "", "  "); err != nil {
			return store.Entry{}, fmt.Errorf("link of step %s: %w", step.Name, err)
		}
	}
	return store.Entry{Kind: store.KindLink, Name: name, RunID: rec.RunID, Subjects: SHA256Subjects(step.Products), Data: data}, nil
}

// Links returns the entries of every step's link of rec, signed by signer
// (see Link), in the order of rec.AllSteps.
func Links(ctx context.Context, rec *run.Record, signer signing.Signer, prev Previous) ([]store.Entry, error) {
	var out []store.Entry
	for _, step := range rec.AllSteps() {
		e, err := Link(ctx, rec, step, signer, prev)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// LinkEntry is the store entry of a link already signed and written (by
// the local runner or stepseal record): name must be a link name; its
// subjects are the products of its step in rec (none when rec is nil or
// lacks the step).
func LinkEntry(rec *run.Record, name string, data []byte) (store.Entry, error) {
	step, _, ok := ParseLinkName(name)
	if !ok {
		return store.Entry{}, fmt.Errorf("%q is not a link name (<step>.<keyid[:8]>.link)", name)
	}
	e := store.Entry{Kind: store.KindLink, Name: name, Data: data}
	if rec != nil {
		e.RunID = rec.RunID
		for _, s := range rec.AllSteps() {
			if s.Name == step {
				e.Subjects = SHA256Subjects(s.Products)
				break
			}
		}
	}
	return e, nil
}

// AttemptLinkEntry is the store entry of the link of a failed, retried
// attempt of a step (name must be an AttemptLinkName), for run runID: kind
// link, like the step's last link. The record holds only a task's last
// attempt, so the subjects are that attempt's products as its own signed
// link lists them (none when it lists none or cannot be read as a link).
func AttemptLinkEntry(runID, name string, data []byte) (store.Entry, error) {
	if _, _, _, ok := ParseAttemptLinkName(name); !ok {
		return store.Entry{}, fmt.Errorf("%q is not an attempt link name (<step>.<keyid[:8]>.attempt-<n>.link)", name)
	}
	e := store.Entry{Kind: store.KindLink, Name: name, RunID: runID, Data: data}
	var mb struct {
		Signed struct {
			Products map[string]map[string]string `json:"products"`
		} `json:"signed"`
	}
	if json.Unmarshal(data, &mb) == nil {
		products := run.Artifacts{}
		for n, d := range mb.Signed.Products {
			products[n] = run.DigestSet(d)
		}
		e.Subjects = SHA256Subjects(products)
	}
	return e, nil
}

// Digests returns the name and sha256 of every entry, as provenance takes
// its links (attest.ProvenanceOptions.Links).
func Digests(entries []store.Entry) run.Artifacts {
	out := run.Artifacts{}
	for _, e := range entries {
		out[e.Name] = run.DigestSet{"sha256": strings.TrimPrefix(store.Digest(e.Data), "sha256:")}
	}
	return out
}

// Provenance returns the store entry of the provenance statement st named
// name for run runID, signed by signer: the bytes an earlier attempt stored
// when they are a signed DSSE envelope of exactly st, else a new signature.
// indent writes the envelope indented (the local runner's file) instead of
// compact. Its subjects are st's sha256 subjects.
func Provenance(ctx context.Context, st *intoto.Statement, name, runID string, signer signing.Signer, prev Previous, indent bool) (store.Entry, error) {
	data, ok := ReusableStatement(prev.get(store.KindProvenance, name), st)
	if !ok {
		env, err := attest.SignStatement(ctx, st, signer)
		if err != nil {
			return store.Entry{}, fmt.Errorf("signing provenance: %w", err)
		}
		if indent {
			data, err = json.MarshalIndent(env, "", "  ")
		} else {
			data, err = json.Marshal(env)
		}
		if err != nil {
			return store.Entry{}, err
		}
	}
	var subjects []string
	for _, s := range st.Subject {
		if d, ok := s.Digest["sha256"]; ok {
			subjects = append(subjects, "sha256:"+d)
		}
	}
	return store.Entry{Kind: store.KindProvenance, Name: name, RunID: runID, Subjects: subjects, Data: data}, nil
}

// Envelope decodes a provenance entry's DSSE envelope.
func Envelope(e store.Entry) (*dsse.Envelope, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(e.Data, &env); err != nil {
		return nil, fmt.Errorf("%s %s: %w", e.Kind, e.Name, err)
	}
	return &env, nil
}

// SHA256Subjects lists the sha256 digests of a as store subjects
// ("sha256:<hex>").
func SHA256Subjects(a run.Artifacts) []string {
	var out []string
	for _, n := range a.Names() {
		if d := a[n]["sha256"]; d != "" {
			out = append(out, "sha256:"+d)
		}
	}
	return out
}

// reusableLink returns the stored bytes of prev when they are a signed
// Metablock of exactly link.
func reusableLink(prev store.Entry, link in_toto.Link) ([]byte, bool) {
	if len(prev.Data) == 0 {
		return nil, false
	}
	var old in_toto.Metablock
	if err := json.Unmarshal(prev.Data, &old); err != nil || len(old.Signatures) == 0 {
		return nil, false
	}
	a, err1 := old.GetSignableRepresentation()
	b, err2 := (&in_toto.Metablock{Signed: link}).GetSignableRepresentation()
	if err1 != nil || err2 != nil || string(a) != string(b) {
		return nil, false
	}
	return prev.Data, true
}

// ReusableStatement returns the stored bytes of prev when they are a signed
// DSSE envelope of exactly st.
func ReusableStatement(prev store.Entry, st *intoto.Statement) ([]byte, bool) {
	if len(prev.Data) == 0 {
		return nil, false
	}
	var env dsse.Envelope
	if err := json.Unmarshal(prev.Data, &env); err != nil || len(env.Signatures) == 0 {
		return nil, false
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, false
	}
	old := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, old); err != nil || !proto.Equal(old, st) {
		return nil, false
	}
	return prev.Data, true
}

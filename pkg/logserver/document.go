package logserver

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Limits on a document the server accepts. A document is stored inline in
// its log entry (a tlog-tiles entry is at most 64 KiB and the record
// base64-encodes the document), so MaxDocumentSize is what fits with a
// name, a run and the subjects beside it; the record encoder refuses the
// rare document that still does not fit.
const (
	MaxDocumentSize = 44 << 10
	MaxSubjects     = 128
)

// Keys is the allow-list of keys whose signatures the server accepts.
type Keys []signing.Verifier

// Derive reads a document as the server does: a DSSE envelope of an in-toto
// statement (kind provenance for SLSA provenance, else attestation; its
// name is the predicate type; its run is a SLSA v1 provenance's
// invocationId; its subjects the statement's sha256 subjects), or an
// in-toto Metablock (a link: kind link, named <step>.<keyid[:8]>.link after
// the allowed key that signed it, run from stepseal's environment entry,
// subjects its sha256 products; a layout: kind layout, no subjects). Nothing
// the writer declares besides the document is believed. At least one
// signature must verify with a key of keys; ErrDocument or ErrNotAllowed
// otherwise, naming the document's digest.
func Derive(ctx context.Context, doc []byte, keys Keys) (store.Entry, error) {
	digest := store.Digest(doc)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: document %s: %s", ErrDocument, digest, fmt.Sprintf(format, args...))
	}
	if len(doc) == 0 {
		return store.Entry{}, fmt.Errorf("%w: empty body", ErrDocument)
	}
	if len(doc) > MaxDocumentSize {
		return store.Entry{}, bad("%d bytes, at most %d", len(doc), MaxDocumentSize)
	}
	var head map[string]json.RawMessage
	if err := json.Unmarshal(doc, &head); err != nil {
		return store.Entry{}, bad("not a JSON object: %v", err)
	}
	var e store.Entry
	var err error
	switch {
	case head["payloadType"] != nil:
		e, err = deriveEnvelope(ctx, doc, digest, keys)
	case head["signed"] != nil:
		e, err = deriveMetablock(ctx, head, digest, keys)
	default:
		return store.Entry{}, bad("neither a DSSE envelope (payloadType) nor an in-toto Metablock (signed)")
	}
	if err != nil {
		return store.Entry{}, err
	}
	if len(e.Subjects) > MaxSubjects {
		return store.Entry{}, bad("%d subjects, at most %d", len(e.Subjects), MaxSubjects)
	}
	e.Data = doc
	if err := store.Validate(&e); err != nil {
		return store.Entry{}, fmt.Errorf("%w: document %s: %w", ErrDocument, digest, err)
	}
	return e, nil
}

// statement is what the server reads of an in-toto statement.
type statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string `json:"predicateType"`
	Predicate     struct {
		RunDetails struct {
			Metadata struct {
				InvocationID string `json:"invocationId"`
			} `json:"metadata"`
		} `json:"runDetails"`
	} `json:"predicate"`
}

func deriveEnvelope(ctx context.Context, doc []byte, digest string, keys Keys) (store.Entry, error) {
	env, err := signing.ParseEnvelope(doc, "document "+digest)
	if err != nil {
		return store.Entry{}, fmt.Errorf("%w: %w", ErrDocument, err)
	}
	if env.PayloadType != signing.PayloadTypeInToto {
		return store.Entry{}, fmt.Errorf("%w: document %s: payload type %q, want %q", ErrDocument, digest, env.PayloadType, signing.PayloadTypeInToto)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return store.Entry{}, fmt.Errorf("%w: document %s: payload: %v", ErrDocument, digest, err)
	}
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return store.Entry{}, fmt.Errorf("%w: document %s: payload is not an in-toto statement: %v", ErrDocument, digest, err)
	}
	if !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") || st.PredicateType == "" {
		return store.Entry{}, fmt.Errorf("%w: document %s: statement type %q with predicate type %q", ErrDocument, digest, st.Type, st.PredicateType)
	}
	if len(keys) == 0 {
		return store.Entry{}, fmt.Errorf("%w: document %s: the server allows no key", ErrNotAllowed, digest)
	}
	if _, err := signing.VerifyEnvelope(ctx, env, 1, keys...); err != nil {
		return store.Entry{}, fmt.Errorf("%w: document %s (statement about %d subjects, signed by key IDs %s): %w", ErrNotAllowed, digest, len(st.Subject), envelopeKeyIDs(env.Signatures), err)
	}
	e := store.Entry{Kind: store.KindAttestation, Name: st.PredicateType}
	if strings.HasPrefix(st.PredicateType, "https://slsa.dev/provenance/") {
		e.Kind = store.KindProvenance
		e.RunID = st.Predicate.RunDetails.Metadata.InvocationID
	}
	if len(st.Subject) > MaxSubjects {
		return store.Entry{}, fmt.Errorf("%w: document %s: %d subjects, at most %d", ErrDocument, digest, len(st.Subject), MaxSubjects)
	}
	for _, s := range st.Subject {
		if d, ok := s.Digest["sha256"]; ok {
			e.Subjects = append(e.Subjects, "sha256:"+d)
		}
	}
	return e, nil
}

func envelopeKeyIDs(sigs []dsse.Signature) string {
	ids := make([]string, 0, len(sigs))
	for _, s := range sigs {
		ids = append(ids, fmt.Sprintf("%q", s.KeyID))
	}
	return "[" + strings.Join(ids, " ") + "]"
}

func deriveMetablock(ctx context.Context, head map[string]json.RawMessage, digest string, keys Keys) (store.Entry, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: document %s: %s", ErrDocument, digest, fmt.Sprintf(format, args...))
	}
	for k := range head {
		if k != "signed" && k != "signatures" {
			return store.Entry{}, bad("Metablock field %q", k)
		}
	}
	var sigs []in_toto.Signature
	if err := strictJSON(head["signatures"], &sigs); err != nil || len(sigs) == 0 {
		return store.Entry{}, bad("Metablock signatures: missing or malformed")
	}
	var typ struct {
		Type string `json:"_type"`
	}
	if err := json.Unmarshal(head["signed"], &typ); err != nil {
		return store.Entry{}, bad("Metablock signed part: %v", err)
	}
	mb := in_toto.Metablock{Signatures: sigs}
	var e store.Entry
	switch typ.Type {
	case "link":
		var l in_toto.Link
		if err := strictJSON(head["signed"], &l); err != nil {
			return store.Entry{}, bad("link: %v", err)
		}
		mb.Signed = l
		e.Kind = store.KindLink
		if run, ok := l.Environment[attest.EnvRunID].(string); ok {
			e.RunID = run
		}
		if len(l.Products) > MaxSubjects {
			return store.Entry{}, bad("link of step %q: %d products, at most %d", l.Name, len(l.Products), MaxSubjects)
		}
		names := make([]string, 0, len(l.Products))
		for n := range l.Products {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if h, ok := l.Products[n]["sha256"]; ok {
				e.Subjects = append(e.Subjects, "sha256:"+h)
			}
		}
		e.Name = l.Name
	case "layout":
		var l in_toto.Layout
		if err := strictJSON(head["signed"], &l); err != nil {
			return store.Entry{}, bad("layout: %v", err)
		}
		mb.Signed = l
		e.Kind, e.Name = store.KindLayout, "root.layout"
	default:
		return store.Entry{}, bad("Metablock of type %q, want link or layout", typ.Type)
	}
	payload, err := mb.GetSignableRepresentation()
	if err != nil {
		return store.Entry{}, bad("canonical form: %v", err)
	}
	keyID, err := verifyMetablock(ctx, payload, sigs, keys)
	if err != nil {
		ids := make([]string, 0, len(sigs))
		for _, s := range sigs {
			ids = append(ids, fmt.Sprintf("%q", s.KeyID))
		}
		return store.Entry{}, fmt.Errorf("%w: document %s (%s %q, signed by key IDs [%s]): %w", ErrNotAllowed, digest, e.Kind, e.Name, strings.Join(ids, " "), err)
	}
	if e.Kind == store.KindLink {
		e.Name = seal.LinkName(e.Name, keyID)
	}
	return e, nil
}

// verifyMetablock returns the ID of the first allowed key with a valid
// signature over payload.
func verifyMetablock(ctx context.Context, payload []byte, sigs []in_toto.Signature, keys Keys) (string, error) {
	if len(keys) == 0 {
		return "", errors.New("the server allows no key")
	}
	var why []string
	for _, k := range keys {
		id, err := k.KeyID()
		if err != nil {
			continue
		}
		for _, s := range sigs {
			if s.KeyID != id {
				continue
			}
			raw, err := hex.DecodeString(s.Sig)
			if err != nil {
				why = append(why, fmt.Sprintf("key %s: signature is not hex", id))
				continue
			}
			if err := k.Verify(ctx, payload, raw); err != nil {
				why = append(why, fmt.Sprintf("key %s: signature does not verify over this content", id))
				continue
			}
			return id, nil
		}
	}
	if len(why) == 0 {
		return "", errors.New("no signature by an allowed key")
	}
	return "", errors.New(strings.Join(why, "; "))
}

// strictJSON decodes one JSON value with no unknown fields and nothing
// after it, so the canonical form that is verified is all the document says.
func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the value")
	}
	return nil
}

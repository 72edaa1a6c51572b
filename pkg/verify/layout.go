package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/cjson"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/signing"
)

// parsedLayout is a layout Metablock read by parseLayout.
type parsedLayout struct {
	Layout     in_toto.Layout
	Signatures []signature
	// Payload is the canonical JSON of "signed", what owners sign.
	Payload []byte
}

// schema constrains the keys of a JSON document: objects with fields may
// only have those (exact, case-sensitive) keys; elem applies to array
// elements, values to the values of free-keyed maps. Types are left to
// encoding/json, which decodes the document into in-toto-golang's types.
type schema struct {
	fields map[string]*schema
	elem   *schema
	values *schema
}

var (
	keySchema = &schema{fields: map[string]*schema{
		"keyid": nil, "keyid_hash_algorithms": nil, "keytype": nil, "scheme": nil,
		"keyval": {fields: map[string]*schema{"private": nil, "public": nil, "certificate": nil}},
	}}
	itemFields = map[string]*schema{
		"_type": nil, "name": nil, "expected_materials": nil, "expected_products": nil,
	}
	stepSchema       = &schema{fields: with(itemFields, "pubkeys", "cert_constraints", "expected_command", "threshold")}
	inspectionSchema = &schema{fields: with(itemFields, "run")}
	layoutSchema     = &schema{fields: map[string]*schema{
		"signatures": {elem: &schema{fields: map[string]*schema{"keyid": nil, "sig": nil, "cert": nil}}},
		"signed": {fields: map[string]*schema{
			"_type": nil, "expires": nil, "readme": nil,
			"steps":           {elem: stepSchema},
			"inspect":         {elem: inspectionSchema},
			"keys":            {values: keySchema},
			"rootcas":         {values: keySchema},
			"intermediatecas": {values: keySchema},
		}},
	}}
)

func with(base map[string]*schema, more ...string) map[string]*schema {
	m := make(map[string]*schema, len(base)+len(more))
	for k, v := range base {
		m[k] = v
	}
	for _, k := range more {
		m[k] = nil
	}
	return m
}

// check returns an error naming the first key v has that s does not allow.
func (s *schema) check(v *jvalue, at string) error {
	if s == nil || v.kind == jNull {
		return nil
	}
	switch {
	case s.fields != nil && v.kind == jObj:
		for i := range v.obj {
			m := &v.obj[i]
			sub, ok := s.fields[m.key]
			if !ok {
				return fmt.Errorf("%s: unknown key %q", at, m.key)
			}
			if err := sub.check(&m.val, at+"."+m.key); err != nil {
				return err
			}
		}
	case s.values != nil && v.kind == jObj:
		for i := range v.obj {
			if err := s.values.check(&v.obj[i].val, fmt.Sprintf("%s[%q]", at, v.obj[i].key)); err != nil {
				return err
			}
		}
	case s.elem != nil && v.kind == jArr:
		for i := range v.arr {
			if err := s.elem.check(&v.arr[i], fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseLayout reads a layout Metablock strictly (no duplicate, unknown or
// case-variant keys) and computes the canonical bytes its owners signed,
// using in-toto-golang's own types and securesystemslib's cjson, so the
// signed bytes are by construction the ones in-toto-golang verifies.
func parseLayout(data []byte, file string) (*parsedLayout, error) {
	malformed := func(format string, args ...any) error {
		return &MalformedError{File: file, Reason: fmt.Sprintf(format, args...)}
	}
	p := newParser(data)
	doc, err := p.value()
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return nil, malformed("%v", err)
	}
	if doc.kind != jObj {
		return nil, malformed("not a JSON object")
	}
	if _, ok := doc.member("payloadType"); ok {
		return nil, &UnsupportedError{File: file, Feature: "DSSE envelope", Reason: "layouts must be in-toto Metablocks ({\"signed\":…,\"signatures\":[…]})"}
	}
	if err := layoutSchema.check(&doc, "$"); err != nil {
		return nil, malformed("%v", err)
	}
	signed, ok := doc.member("signed")
	if !ok || signed.kind != jObj {
		return nil, malformed(`"signed" must be an object`)
	}
	sigs, ok := doc.member("signatures")
	if !ok || sigs.kind != jArr {
		return nil, malformed(`"signatures" must be an array`)
	}
	if t, _ := signed.member("_type"); t == nil || t.kind != jStr || t.s != "layout" {
		if t != nil && t.s == "link" {
			return nil, malformed("this is a link, not a layout")
		}
		return nil, malformed(`"_type" must be "layout"`)
	}
	for _, k := range []string{"_type", "steps", "inspect", "keys", "expires", "readme"} {
		if _, ok := signed.member(k); !ok {
			return nil, malformed("required key %q missing", k)
		}
	}
	l := &parsedLayout{}
	dec := json.NewDecoder(bytes.NewReader(data[signed.start:signed.end]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l.Layout); err != nil {
		return nil, malformed("%v", err)
	}
	for i := range sigs.arr {
		s := &sigs.arr[i]
		if s.kind != jObj {
			return nil, malformed("signature %d is not an object", i)
		}
		if _, ok := s.member("cert"); ok {
			return nil, &UnsupportedError{File: file, Feature: "certificate signature", Reason: "layout signatures must be by owner keys"}
		}
		id, _ := s.member("keyid")
		sig, _ := s.member("sig")
		if id == nil || id.kind != jStr || sig == nil || sig.kind != jStr {
			return nil, malformed(`signature %d needs string "keyid" and "sig"`, i)
		}
		l.Signatures = append(l.Signatures, signature{KeyID: id.s, Sig: sig.s})
	}
	if l.Payload, err = cjson.EncodeCanonical(l.Layout); err != nil {
		return nil, malformed("cannot canonicalize: %v", err)
	}
	return l, nil
}

// layoutStep is a step of the layout, checked and with its rules compiled.
type layoutStep struct {
	Name            string
	Threshold       int
	PubKeys         []string
	ExpectedCommand []string
	// MayFail: the layout's readme lets the step fail (Tekton's onError:
	// continue, attest.ReadmeOnErrorContinue).
	MayFail       bool
	MaterialRules []rule
	ProductRules  []rule
}

// checkedLayout is a parsed layout whose content passed the checks of
// compile: what steps 3 to 9 of Layout work from.
type checkedLayout struct {
	*parsedLayout
	Expires time.Time
	Steps   []layoutStep
	byName  map[string]int
	// Keys are the functionary keys, by key ID (recomputed from the key).
	Keys     map[string]signing.Verifier
	Warnings []string
	// Skips are the layout's skippable tasks (attest.SkipRule), in readme
	// order; skipOf maps each of their steps to its rule.
	Skips  []attest.SkipRule
	skipOf map[string]*attest.SkipRule
	// Rotated and Revoked are the functionary keys the readme rotated out
	// or revoked (attest.KeyRotation, attest.KeyRevocation), by key ID.
	Rotated map[string]attest.KeyRotation
	Revoked map[string]attest.KeyRevocation
}

// compile checks what the layout says and compiles its rules. It refuses
// inspections and certificate features (ErrUnsupported) and malformed
// keys, steps and rules (ErrMalformed); every problem found is returned.
func compile(pl *parsedLayout, file string) (*checkedLayout, []error) {
	var errs []error
	malformed := func(format string, args ...any) {
		errs = append(errs, &MalformedError{File: file, Reason: fmt.Sprintf(format, args...)})
	}
	unsupported := func(feature, format string, args ...any) {
		errs = append(errs, &UnsupportedError{File: file, Feature: feature, Reason: fmt.Sprintf(format, args...)})
	}
	L := &pl.Layout
	cl := &checkedLayout{parsedLayout: pl, byName: map[string]int{}, Keys: map[string]signing.Verifier{}}
	var err error
	if cl.Expires, err = time.Parse(in_toto.ISO8601DateSchema, L.Expires); err != nil {
		malformed("expires %q is not of the form %s", L.Expires, in_toto.ISO8601DateSchema)
	}
	if len(L.Inspect) > 0 {
		names := make([]string, len(L.Inspect))
		for i, in := range L.Inspect {
			names[i] = fmt.Sprintf("%q", in.Name)
		}
		unsupported("inspections", "the layout has inspection(s) %s; stepseal never executes commands during verification", strings.Join(names, ", "))
	}
	if len(L.RootCas) > 0 || len(L.IntermediateCas) > 0 {
		unsupported("certificate authorities", "rootcas/intermediatecas are not supported; functionaries must be keys of the layout")
	}
	for id, k := range L.Keys {
		if k.KeyID != id {
			malformed("key %s is listed under key ID %s", short(k.KeyID), short(id))
			continue
		}
		if k.KeyVal.Private != "" {
			malformed("key %s: the layout contains private key material", short(id))
			continue
		}
		v, err := signing.VerifierFromInTotoKey(k)
		if err != nil {
			unsupported("key", "key %s: %v", short(id), err)
			continue
		}
		cl.Keys[id] = v
	}
	for i, s := range L.Steps {
		at := fmt.Sprintf("step %d", i)
		if s.Name == "" {
			malformed("%s has no name", at)
			continue
		}
		at = fmt.Sprintf("step %q", s.Name)
		if s.Type != "step" {
			malformed(`%s: _type %q is not "step"`, at, s.Type)
		}
		if _, dup := cl.byName[s.Name]; dup {
			malformed("%s appears twice", at)
			continue
		}
		if s.Threshold < 1 {
			malformed("%s: threshold %d is less than 1", at, s.Threshold)
		}
		if len(s.CertificateConstraints) > 0 {
			unsupported("cert_constraints", "%s: certificate-based functionaries are not supported", at)
		}
		for _, id := range s.PubKeys {
			if _, ok := L.Keys[id]; !ok {
				cl.Warnings = append(cl.Warnings, fmt.Sprintf("%s authorizes key %s, which the layout does not define: no link signed by it can be verified", at, short(id)))
			}
		}
		st := layoutStep{Name: s.Name, Threshold: s.Threshold, PubKeys: s.PubKeys, ExpectedCommand: s.ExpectedCommand}
		for _, r := range s.ExpectedMaterials {
			c, err := unpackRule(r)
			if err != nil {
				malformed("%s: material rule %v", at, err)
			}
			st.MaterialRules = append(st.MaterialRules, c)
		}
		for _, r := range s.ExpectedProducts {
			c, err := unpackRule(r)
			if err != nil {
				malformed("%s: product rule %v", at, err)
			}
			st.ProductRules = append(st.ProductRules, c)
		}
		cl.byName[s.Name] = len(cl.Steps)
		cl.Steps = append(cl.Steps, st)
	}
	d, err := attest.ParseReadme(L.Readme)
	if err != nil {
		malformed("readme: %v", err)
	}
	for _, name := range d.OnErrorContinue {
		i, ok := cl.byName[name]
		if !ok {
			malformed("readme: %s%s names a step the layout does not have", attest.ReadmeOnErrorContinue, name)
			continue
		}
		cl.Steps[i].MayFail = true
	}
	cl.Rotated = map[string]attest.KeyRotation{}
	for _, r := range d.Rotated {
		cl.Rotated[r.KeyID] = r
	}
	cl.Revoked = map[string]attest.KeyRevocation{}
	for _, r := range d.Revoked {
		cl.Revoked[r.KeyID] = r
	}
	cl.Skips = d.Skippable
	cl.skipOf = map[string]*attest.SkipRule{}
	tasks := map[string]bool{}
	for i := range cl.Skips {
		tasks[cl.Skips[i].Task] = true
	}
	for i := range cl.Skips {
		r := &cl.Skips[i]
		for _, p := range append(append([]string(nil), r.Parents...), r.ResultsFrom...) {
			if !tasks[p] {
				malformed("readme: skippable task %s: its skip may cascade from task %s, which has no skippable rule", r.Task, p)
			}
		}
		for _, name := range r.Steps {
			i, ok := cl.byName[name]
			if !ok {
				malformed("readme: skippable task %s: step %s is not a step of the layout", r.Task, name)
				continue
			}
			for _, k := range r.Keys {
				if !slices.Contains(cl.Steps[i].PubKeys, k) {
					malformed("readme: skippable task %s: key %s may sign skip records but is not a key of step %s", r.Task, short(k), name)
				}
			}
			cl.skipOf[name] = r
		}
	}
	return cl, errs
}

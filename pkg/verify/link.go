package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
)

// signature is one entry of a Metablock's "signatures".
type signature struct {
	KeyID string
	Sig   string // hex
}

// artifact is one material or product.
type artifact struct {
	name   string
	digest digestSet
}

// digestSet is an artifact's digests. The usual single-algorithm set is
// held as its algorithm and value (substrings of the link, no copy); a set
// of several algorithms as its canonical JSON in multi. Two digest sets are
// equal (as reflect.DeepEqual compares in-toto-golang's maps) exactly when
// the structs are equal.
type digestSet struct{ alg, val, multi string }

func (d digestSet) appendCanon(b []byte) []byte {
	if d.multi != "" {
		return append(b, d.multi...)
	}
	b = append(b, '{')
	b = appendCanonString(b, d.alg)
	// val is hex (both parse paths check it): nothing to escape.
	b = append(b, ':', '"')
	b = append(b, d.val...)
	return append(b, '"', '}')
}

// String is the canonical JSON of the set.
func (d digestSet) String() string { return string(d.appendCanon(nil)) }

// artifacts is a link's materials or products.
type artifacts struct {
	null bool       // "materials": null (distinct from {} for agreement, as in in-toto)
	raw  []artifact // as signed, sorted by name
	// clean is raw with every name passed through path.Clean, sorted; it
	// shares raw's backing array when every name already was clean.
	clean []artifact
}

// find returns the index of name in the cleaned list, or -1.
func (a *artifacts) find(name string) int {
	c := a.clean
	i := sort.Search(len(c), func(i int) bool { return c[i].name >= name })
	if i < len(c) && c[i].name == name {
		return i
	}
	return -1
}

// parsedLink is a link read by parseLink.
type parsedLink struct {
	Type        string
	Name        string
	Materials   artifacts
	Products    artifacts
	Command     []string
	CommandNull bool
	RunID       string
	HasRunID    bool
	// Result is what the link's byproducts say of the command's outcome.
	Result commandResult
	// Skip is set when the link is a skip record (byproducts carry
	// attest.BySkip); SkipErr when that value does not decode.
	Skip       *run.Skip
	SkipErr    string
	Signatures []signature
	// Payload is the canonical JSON of "signed": the bytes the signatures cover.
	Payload []byte
}

// commandResult is the outcome of a link's command as its byproducts
// record it: "return-value" (in-toto-run's exit status) and
// "stepseal.dev/timed-out".
type commandResult struct {
	// Has: byproducts has a "return-value" (of any type).
	Has bool
	// Int: it is an integer, Value.
	Int   bool
	Value int64
	// Raw is its JSON text, for messages.
	Raw string
	// TimedOut: "stepseal.dev/timed-out" is present and not false.
	TimedOut bool
}

// readCommandResult reads the return value and timeout mark of byproducts.
func readCommandResult(byproducts *jvalue, data []byte) commandResult {
	var r commandResult
	if byproducts.kind != jObj {
		return r
	}
	if v, ok := byproducts.member(attest.ByReturnValue); ok {
		r.Has = true
		r.Raw = string(data[v.start:v.end])
		if v.kind == jNum {
			if c, err := canonNumber(v.s); err == nil {
				if n, err := strconv.ParseInt(c, 10, 64); err == nil {
					r.Int, r.Value = true, n
				}
			}
		}
	}
	if v, ok := byproducts.member(attest.ByTimedOut); ok {
		r.TimedOut = !(v.kind == jBool && !v.b)
	}
	return r
}

// readSkip decodes the skip record mark of byproducts, strictly.
func readSkip(byproducts *jvalue, data []byte) (*run.Skip, string) {
	if byproducts.kind != jObj {
		return nil, ""
	}
	v, ok := byproducts.member(attest.BySkip)
	if !ok {
		return nil, ""
	}
	var s run.Skip
	dec := json.NewDecoder(bytes.NewReader(data[v.start:v.end]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Sprintf("byproducts %q: %v", attest.BySkip, err)
	}
	if s.Reason == "" {
		return nil, fmt.Sprintf("byproducts %q: no reason", attest.BySkip)
	}
	return &s, ""
}

// Errors parseLink returns for metadata that is well-formed but not a link.
var (
	errSublayout = errors.New("the signed object is a layout (sublayout)")
	errDSSE      = errors.New("DSSE envelope")
	// errCertSignature: a signature carrying an X.509 certificate.
	errCertSignature = errors.New("signature with an X.509 certificate")
)

// Index of each key of a link's "signed" object in linkKeys.
const (
	lkType = iota
	lkName
	lkMaterials
	lkProducts
	lkByproducts
	lkCommand
	lkEnvironment
)

var linkKeys = []string{"_type", "name", "materials", "products", "byproducts", "command", "environment"}

// parseLink reads a link Metablock in one pass and computes the canonical
// JSON of its signed part, byte-identical to in-toto-golang's
// Metablock.GetSignableRepresentation for the same file.
func parseLink(data []byte) (*parsedLink, error) { return parseLinkFrom(newParser(data), data) }

// parseLinkOwned is parseLink for a buffer nobody else holds or will
// change: the link's strings alias it instead of a copy.
func parseLinkOwned(data []byte) (*parsedLink, error) {
	return parseLinkFrom(newParserOwned(data), data)
}

func parseLinkFrom(p *parser, data []byte) (*parsedLink, error) {
	l := &parsedLink{}
	var byproducts, environment jvalue
	top := keySet{names: []string{"signed", "signatures"}}
	err := p.object(func(k string) error {
		if k == "payloadType" {
			return errDSSE
		}
		i, err := top.add(p, k)
		if err != nil {
			return err
		}
		if i == 1 {
			l.Signatures, err = parseSignatures(p)
			return err
		}
		ks := keySet{names: linkKeys}
		err = p.object(func(k string) error {
			i, err := ks.add(p, k)
			if err != nil {
				if l.Type == "layout" || k == "steps" || k == "keys" {
					return errSublayout
				}
				return err
			}
			switch i {
			case lkType:
				l.Type, err = p.str()
				if err == nil && l.Type != "link" {
					if l.Type == "layout" {
						return errSublayout
					}
					return p.errorf("_type %q is not \"link\"", l.Type)
				}
			case lkName:
				l.Name, err = p.str()
			case lkMaterials:
				l.Materials, err = parseArtifacts(p, "materials")
			case lkProducts:
				l.Products, err = parseArtifacts(p, "products")
			case lkByproducts:
				byproducts, err = p.value()
				if err == nil && byproducts.kind != jObj && byproducts.kind != jNull {
					err = p.errorf("byproducts must be an object")
				}
			case lkCommand:
				if p.null() {
					l.CommandNull = true
					return nil
				}
				l.Command = []string{}
				err = p.array(func() error {
					s, err := p.str()
					l.Command = append(l.Command, s)
					return err
				})
			case lkEnvironment:
				environment, err = p.value()
				if err == nil && environment.kind != jObj && environment.kind != jNull {
					err = p.errorf("environment must be an object")
				}
				if v, ok := environment.member(attest.EnvRunID); ok {
					l.HasRunID = true
					if v.kind == jStr {
						l.RunID = v.s
					} else {
						l.RunID = string(data[v.start:v.end])
					}
				}
			}
			return err
		})
		if err == nil {
			err = ks.require(p, lkType, lkName, lkMaterials, lkProducts, lkByproducts, lkCommand, lkEnvironment)
		}
		return err
	})
	if err == nil {
		err = p.end()
	}
	if err == nil {
		err = top.require(p, 0, 1)
	}
	if err != nil {
		return nil, err
	}
	l.Result = readCommandResult(&byproducts, data)
	l.Skip, l.SkipErr = readSkip(&byproducts, data)
	if l.Payload, err = l.canonical(len(data), &byproducts, &environment); err != nil {
		return nil, err
	}
	return l, nil
}

// payloadBufs recycles the buffers canonical payloads are written into: a
// payload is dropped as soon as its signature is checked.
var payloadBufs sync.Pool

func getPayloadBuf(size int) []byte {
	if b, ok := payloadBufs.Get().(*[]byte); ok && cap(*b) >= size {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

// releasePayload returns a link's payload buffer for reuse.
func (l *parsedLink) releasePayload() {
	if l.Payload != nil {
		b := l.Payload[:0]
		payloadBufs.Put(&b)
		l.Payload = nil
	}
}

// canonical writes the canonical JSON of the link: keys sorted, as cjson
// writes in-toto-golang's Link struct.
func (l *parsedLink) canonical(sizeHint int, byproducts, environment *jvalue) ([]byte, error) {
	b := getPayloadBuf(sizeHint)
	b = append(b, `{"_type":`...)
	b = appendCanonString(b, l.Type)
	b = append(b, `,"byproducts":`...)
	var err error
	if b, err = appendCanon(b, byproducts); err != nil {
		return nil, fmt.Errorf("byproducts: %w", err)
	}
	b = append(b, `,"command":`...)
	if l.CommandNull {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range l.Command {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonString(b, c)
		}
		b = append(b, ']')
	}
	b = append(b, `,"environment":`...)
	if b, err = appendCanon(b, environment); err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	b = append(b, `,"materials":`...)
	b = l.Materials.appendCanon(b)
	b = append(b, `,"name":`...)
	b = appendCanonString(b, l.Name)
	b = append(b, `,"products":`...)
	b = l.Products.appendCanon(b)
	return append(b, '}'), nil
}

func (a *artifacts) appendCanon(b []byte) []byte {
	if a.null {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, x := range a.raw {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCanonString(b, x.name)
		b = append(b, ':')
		b = x.digest.appendCanon(b)
	}
	return append(b, '}')
}

// parseArtifacts reads a materials or products object. Each digest set must
// be a non-empty object of hex strings.
func parseArtifacts(p *parser, kind string) (artifacts, error) {
	var a artifacts
	if p.null() {
		a.null = true
		return a, nil
	}
	// Parse into a pooled scratch slice, then keep an exact-size copy: no
	// guess at the count, no growth by doubling.
	sp, _ := artifactScratch.Get().(*[]artifact)
	if sp == nil {
		sp = new([]artifact)
	}
	list := (*sp)[:0]
	err := p.object(func(name string) error {
		d, err := parseDigestSet(p, kind, name)
		list = append(list, artifact{name: name, digest: d})
		return err
	})
	if err == nil {
		a.raw = make([]artifact, len(list))
		copy(a.raw, list)
	}
	clear(list) // drop the references to the document before pooling
	*sp = list[:0]
	artifactScratch.Put(sp)
	if err != nil {
		return a, err
	}
	if err := sortUnique(a.raw, kind, "appears twice"); err != nil {
		return a, p.errorf("%v", err)
	}
	a.clean = a.raw
	for i, x := range a.raw {
		if !isCleanPath(x.name) && path.Clean(x.name) != x.name {
			c := make([]artifact, len(a.raw))
			copy(c, a.raw)
			for j := i; j < len(c); j++ {
				c[j].name = path.Clean(c[j].name)
			}
			if err := sortUnique(c, kind, "and another name are the same path after path.Clean"); err != nil {
				return a, p.errorf("%v", err)
			}
			a.clean = c
			break
		}
	}
	return a, nil
}

// artifactScratch holds the slices parseArtifacts reads into.
var artifactScratch sync.Pool

// isCleanPath reports, without allocating, that path.Clean(s) == s for the
// usual artifact name: non-empty, no empty element (no "//", no trailing
// '/') other than a leading '/', and no "." or ".." element. False means
// only "not sure": the caller then asks path.Clean.
func isCleanPath(s string) bool {
	if s == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' {
			continue
		}
		switch e := s[start:i]; {
		case e == "" && i != 0, e == ".", e == "..":
			return false
		}
		start = i + 1
	}
	return true
}

// parseDigestSet reads {"alg": "hex", ...}: at least one algorithm, each
// named once, each value non-empty hex.
func parseDigestSet(p *parser, kind, name string) (digestSet, error) {
	if d, ok := p.singleDigest(); ok {
		return d, nil
	}
	if p.null() {
		return digestSet{}, p.errorf("%s %q: digest set is null", kind, name)
	}
	type pair struct{ alg, val string }
	var first pair
	var more []pair
	n := 0
	err := p.object(func(alg string) error {
		v, err := p.hexStr()
		if err != nil {
			return fmt.Errorf("%s %q: %s digest: %w", kind, name, alg, err)
		}
		if alg == "" {
			return p.errorf("%s %q: empty digest algorithm name", kind, name)
		}
		if n == 0 {
			first = pair{alg, v}
		} else {
			more = append(more, pair{alg, v})
		}
		n++
		return nil
	})
	switch {
	case err != nil:
		return digestSet{}, err
	case n == 0:
		return digestSet{}, p.errorf("%s %q: empty digest set", kind, name)
	case n == 1:
		return digestSet{alg: first.alg, val: first.val}, nil
	}
	pairs := append([]pair{first}, more...)
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].alg < pairs[j].alg })
	b := []byte{'{'}
	for i, pr := range pairs {
		if i > 0 {
			if pr.alg == pairs[i-1].alg {
				return digestSet{}, p.errorf("%s %q: duplicate digest algorithm %q", kind, name, pr.alg)
			}
			b = append(b, ',')
		}
		b = appendCanonString(b, pr.alg)
		b = append(b, ':')
		b = appendCanonString(b, pr.val)
	}
	return digestSet{multi: string(append(b, '}'))}, nil
}

// singleDigest is the fast path of parseDigestSet for the usual
// {"alg": "hex"} with no escapes; it consumes nothing unless it succeeds.
func (p *parser) singleDigest() (digestSet, bool) {
	start := p.pos
	fail := func() (digestSet, bool) { p.pos = start; return digestSet{}, false }
	if p.next() != '{' {
		return fail()
	}
	p.pos++
	if p.next() != '"' {
		return fail()
	}
	i := p.pos + 1
	for i < len(p.src) && p.src[i] != '"' && p.src[i] != '\\' && p.src[i] >= 0x20 && p.src[i] < utf8.RuneSelf {
		i++
	}
	if i >= len(p.src) || p.src[i] != '"' || i == p.pos+1 {
		return fail()
	}
	alg := p.src[p.pos+1 : i]
	p.pos = i + 1
	if p.next() != ':' {
		return fail()
	}
	p.pos++
	if p.next() != '"' {
		return fail()
	}
	i = skipHex(p.src, p.pos+1)
	if i >= len(p.src) || p.src[i] != '"' || i == p.pos+1 {
		return fail()
	}
	val := p.src[p.pos+1 : i]
	p.pos = i + 1
	if p.next() != '}' {
		return fail()
	}
	p.pos++
	return digestSet{alg: alg, val: val}, true
}

// isHexByte marks the hex digits.
var isHexByte = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdefABCDEF") {
		t[c] = true
	}
	return t
}()

// skipHex returns the index of the first byte at or after i in s that is
// not a hex digit (len(s) if none).
func skipHex(s string, i int) int {
	for i+8 <= len(s) {
		b := s[i : i+8]
		if !(isHexByte[b[0]] && isHexByte[b[1]] && isHexByte[b[2]] && isHexByte[b[3]] &&
			isHexByte[b[4]] && isHexByte[b[5]] && isHexByte[b[6]] && isHexByte[b[7]]) {
			break
		}
		i += 8
	}
	for i < len(s) && isHexByte[s[i]] {
		i++
	}
	return i
}

// hexStr reads a string that must be non-empty hex, with a fast path for
// the usual unescaped spelling.
func (p *parser) hexStr() (string, error) {
	if p.next() == '"' {
		i := skipHex(p.src, p.pos+1)
		if i < len(p.src) && p.src[i] == '"' && i > p.pos+1 {
			s := p.src[p.pos+1 : i]
			p.pos = i + 1
			return s, nil
		}
	}
	s, err := p.str()
	if err == nil && !isHex(s) {
		err = p.errorf("%q is not hex", s)
	}
	return s, err
}

func sortUnique(a []artifact, kind, what string) error {
	sorted := true
	for i := 1; i < len(a); i++ {
		if a[i].name <= a[i-1].name {
			sorted = false
			break
		}
	}
	if sorted {
		return nil
	}
	sort.Slice(a, func(i, j int) bool { return a[i].name < a[j].name })
	for i := 1; i < len(a); i++ {
		if a[i].name == a[i-1].name {
			return fmt.Errorf("%s %q %s", kind, a[i].name, what)
		}
	}
	return nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexByte[s[i]] {
			return false
		}
	}
	return true
}

// parseSignatures reads a Metablock's "signatures" array.
func parseSignatures(p *parser) ([]signature, error) {
	sigs := []signature{}
	err := p.array(func() error {
		var s signature
		ks := keySet{names: []string{"keyid", "sig", "cert"}}
		err := p.object(func(k string) error {
			i, err := ks.add(p, k)
			if err != nil {
				return err
			}
			var v string
			if v, err = p.str(); err != nil {
				return err
			}
			switch i {
			case 0:
				s.KeyID = v
			case 1:
				s.Sig = v
			case 2:
				return errCertSignature
			}
			return nil
		})
		if err == nil {
			err = ks.require(p, 0, 1)
		}
		sigs = append(sigs, s)
		return err
	})
	return sigs, err
}

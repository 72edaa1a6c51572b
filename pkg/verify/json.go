package verify

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file is a strict, single-pass JSON reader and the canonical JSON
// writer used for signature checks.
//
// Strict: it accepts exactly the JSON texts encoding/json accepts, except
// that it also rejects duplicate object keys, invalid UTF-8 in strings and
// nesting deeper than maxDepth. It decodes strings exactly as encoding/json
// does (including lone UTF-16 surrogates becoming U+FFFD), so the canonical
// bytes written from what it read equal securesystemslib's cjson encoding of
// the same document decoded with encoding/json (tested byte for byte).

const maxDepth = 256

type parser struct {
	src string // the document; decoded strings without escapes are substrings of it
	pos int
	dep int
}

func newParser(data []byte) *parser { return &parser{src: string(data)} }

// newParserOwned reads data without copying it: strings it returns alias
// data, which must never change afterwards. Only for buffers this package
// read itself (see ownedSource).
func newParserOwned(data []byte) *parser {
	return &parser{src: unsafe.String(unsafe.SliceData(data), len(data))}
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{p.pos}, args...)...)
}

func (p *parser) ws() {
	s, i := p.src, p.pos
	for i < len(s) {
		switch s[i] {
		case ' ':
			// Indentation: skip runs of spaces eight at a time.
			for i+8 <= len(s) && load64(s, i) == spaces8 {
				i += 8
			}
			for i < len(s) && s[i] == ' ' {
				i++
			}
		case '\t', '\n', '\r':
			i++
		default:
			p.pos = i
			return
		}
	}
	p.pos = i
}

const spaces8 = 0x2020202020202020

// load64 is the little-endian uint64 of s[i:i+8] (one load on amd64 and arm64).
func load64(s string, i int) uint64 {
	b := s[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// next skips whitespace and returns the next byte without consuming it (0 at EOF).
func (p *parser) next() byte {
	p.ws()
	if p.pos >= len(p.src) {
		return 0
	}
	return p.src[p.pos]
}

func (p *parser) expect(c byte) error {
	if p.next() != c {
		if p.pos >= len(p.src) {
			return p.errorf("unexpected end of input, want %q", c)
		}
		return p.errorf("unexpected %q, want %q", p.src[p.pos], c)
	}
	p.pos++
	return nil
}

// end checks that only whitespace follows the top-level value.
func (p *parser) end() error {
	if p.next() != 0 {
		return p.errorf("unexpected data after the top-level value")
	}
	return nil
}

// literal consumes null, true or false.
func (p *parser) literal(word string) bool {
	if len(p.src)-p.pos >= len(word) && p.src[p.pos:p.pos+len(word)] == word {
		p.pos += len(word)
		return true
	}
	return false
}

// null consumes a null if one is next.
func (p *parser) null() bool {
	if p.next() == 'n' {
		return p.literal("null")
	}
	return false
}

// str reads a JSON string and returns its decoded value.
func (p *parser) str() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if plainByte[c] {
			p.pos++
			continue
		}
		switch {
		case c == '"':
			s := p.src[start:p.pos]
			p.pos++
			return s, nil
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, n := utf8.DecodeRuneInString(p.src[p.pos:])
			if r == utf8.RuneError && n == 1 {
				return "", p.errorf("invalid UTF-8 in string")
			}
			p.pos += n
		}
	}
	return "", p.errorf("unterminated string")
}

// plainByte marks the bytes a string holds as themselves with nothing to
// check: printable ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (p *parser) strSlow(start int) (string, error) {
	b := make([]byte, 0, p.pos-start+16)
	b = append(b, p.src[start:p.pos]...)
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(b), nil
		case c == '\\':
			if p.pos+1 >= len(p.src) {
				return "", p.errorf("unterminated escape")
			}
			e := p.src[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := getu4(p.src[p.pos-2:])
				if r < 0 {
					return "", p.errorf("invalid \\u escape")
				}
				p.pos += 4
				if utf16.IsSurrogate(r) {
					// As encoding/json: a valid pair is combined, anything
					// else becomes U+FFFD and the next escape is left alone.
					r2 := getu4(p.src[p.pos:])
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						p.pos += 6
						b = utf8.AppendRune(b, dec)
						break
					}
					r = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", p.errorf("invalid escape \\%c", e)
			}
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c < utf8.RuneSelf:
			b = append(b, c)
			p.pos++
		default:
			r, n := utf8.DecodeRuneInString(p.src[p.pos:])
			if r == utf8.RuneError && n == 1 {
				return "", p.errorf("invalid UTF-8 in string")
			}
			b = append(b, p.src[p.pos:p.pos+n]...)
			p.pos += n
		}
	}
	return "", p.errorf("unterminated string")
}

// getu4 decodes \uXXXX from the beginning of s, returning -1 on failure
// (the same contract as encoding/json's getu4).
func getu4(s string) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range []byte(s[2:6]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// number reads a JSON number and returns its literal text.
func (p *parser) number() (string, error) {
	p.ws()
	start := p.pos
	s := p.src
	i := p.pos
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return "", p.errorf("invalid number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return "", p.errorf("invalid number")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return "", p.errorf("invalid number")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	p.pos = i
	return s[start:i], nil
}

// object reads an object, calling member for each key with the parser
// positioned at the value, which member must consume. Duplicate keys are the
// caller's to detect (see keySet), since it knows the schema.
func (p *parser) object(member func(key string) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	if p.dep++; p.dep > maxDepth {
		return p.errorf("nesting deeper than %d", maxDepth)
	}
	defer func() { p.dep-- }()
	if p.next() == '}' {
		p.pos++
		return nil
	}
	for {
		k, err := p.str()
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		if err := member(k); err != nil {
			return err
		}
		switch p.next() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return nil
		default:
			return p.errorf("want ',' or '}' in object")
		}
	}
}

// array reads an array, calling elem with the parser positioned at each element.
func (p *parser) array(elem func() error) error {
	if err := p.expect('['); err != nil {
		return err
	}
	if p.dep++; p.dep > maxDepth {
		return p.errorf("nesting deeper than %d", maxDepth)
	}
	defer func() { p.dep-- }()
	if p.next() == ']' {
		p.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch p.next() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return nil
		default:
			return p.errorf("want ',' or ']' in array")
		}
	}
}

// keySet detects duplicate and unknown keys of a fixed-schema object.
type keySet struct {
	names []string
	seen  uint64
}

// add records key and returns its index in names, or an error for a key that
// is unknown (exact, case-sensitive match) or repeated.
func (ks *keySet) add(p *parser, key string) (int, error) {
	for i, n := range ks.names {
		if n == key {
			if ks.seen&(1<<i) != 0 {
				return 0, p.errorf("duplicate key %q", key)
			}
			ks.seen |= 1 << i
			return i, nil
		}
	}
	return 0, p.errorf("unknown key %q", key)
}

func (ks *keySet) has(i int) bool { return ks.seen&(1<<i) != 0 }

// require returns an error naming the first of the listed keys not seen.
func (ks *keySet) require(p *parser, idx ...int) error {
	for _, i := range idx {
		if !ks.has(i) {
			return p.errorf("required key %q missing", ks.names[i])
		}
	}
	return nil
}

// jvalue is a generic JSON value, used for free-form fields (environment,
// byproducts) and for the small layout document.
type jvalue struct {
	kind       jkind
	b          bool
	s          string // string value, or number literal
	arr        []jvalue
	obj        []jmember
	start, end int // byte range in the document
}

type jmember struct {
	key string
	val jvalue
}

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNum
	jStr
	jArr
	jObj
)

// value reads any JSON value, rejecting duplicate keys at every level.
func (p *parser) value() (jvalue, error) {
	c := p.next()
	v := jvalue{start: p.pos}
	var err error
	switch {
	case c == '{':
		v.kind = jObj
		err = p.object(func(k string) error {
			m, err := p.value()
			if err != nil {
				return err
			}
			v.obj = append(v.obj, jmember{key: k, val: m})
			return nil
		})
		if err == nil {
			err = p.checkDuplicates(v.obj)
		}
	case c == '[':
		v.kind = jArr
		err = p.array(func() error {
			e, err := p.value()
			if err != nil {
				return err
			}
			v.arr = append(v.arr, e)
			return nil
		})
	case c == '"':
		v.kind = jStr
		v.s, err = p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		v.kind = jNum
		v.s, err = p.number()
	case c == 't' && p.literal("true"):
		v.kind, v.b = jBool, true
	case c == 'f' && p.literal("false"):
		v.kind = jBool
	case c == 'n' && p.literal("null"):
		v.kind = jNull
	case c == 0:
		err = p.errorf("unexpected end of input")
	default:
		err = p.errorf("unexpected %q", c)
	}
	v.end = p.pos
	return v, err
}

func (p *parser) checkDuplicates(ms []jmember) error {
	if len(ms) <= 16 {
		for i := 1; i < len(ms); i++ {
			for j := 0; j < i; j++ {
				if ms[i].key == ms[j].key {
					return p.errorf("duplicate key %q", ms[i].key)
				}
			}
		}
		return nil
	}
	keys := make([]string, len(ms))
	for i, m := range ms {
		keys[i] = m.key
	}
	sort.Strings(keys)
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			return p.errorf("duplicate key %q", keys[i])
		}
	}
	return nil
}

// member returns the value of key in an object value.
func (v *jvalue) member(key string) (*jvalue, bool) {
	for i := range v.obj {
		if v.obj[i].key == key {
			return &v.obj[i].val, true
		}
	}
	return nil, false
}

// errNotCanonical: a value securesystemslib's cjson cannot encode (a number
// that is not an integer once it went through float64, as encoding/json
// decodes it into interface{}).
var errNotCanonical = errors.New("value cannot be canonicalized")

// appendCanonString writes s as cjson does: only backslash and double quote
// are escaped; every other byte is written as is.
func appendCanonString(b []byte, s string) []byte {
	b = append(b, '"')
	if strings.IndexByte(s, '"') < 0 && strings.IndexByte(s, '\\') < 0 {
		b = append(b, s...)
		return append(b, '"')
	}
	last := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[last:i]...)
			b = append(b, '\\', c)
			last = i + 1
		}
	}
	b = append(b, s[last:]...)
	return append(b, '"')
}

// canonNumber is the cjson text of a number in a free-form field: in-toto
// decodes it into float64, encoding/json re-encodes it, and cjson accepts
// the result only if it parses as an int64.
func canonNumber(lit string) (string, error) {
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return "", fmt.Errorf("number %s: %w", lit, errNotCanonical)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return "", fmt.Errorf("number %s is not an integer: %w", lit, errNotCanonical)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return "", fmt.Errorf("number %s is not a 64-bit integer: %w", lit, errNotCanonical)
	}
	return s, nil
}

// appendCanon writes v in canonical JSON.
func appendCanon(b []byte, v *jvalue) ([]byte, error) {
	switch v.kind {
	case jNull:
		return append(b, "null"...), nil
	case jBool:
		if v.b {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case jStr:
		return appendCanonString(b, v.s), nil
	case jNum:
		s, err := canonNumber(v.s)
		if err != nil {
			return nil, err
		}
		return append(b, s...), nil
	case jArr:
		b = append(b, '[')
		for i := range v.arr {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendCanon(b, &v.arr[i]); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case jObj:
		idx := make([]int, len(v.obj))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(i, j int) bool { return v.obj[idx[i]].key < v.obj[idx[j]].key })
		b = append(b, '{')
		for n, i := range idx {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendCanonString(b, v.obj[i].key)
			b = append(b, ':')
			var err error
			if b, err = appendCanon(b, &v.obj[i].val); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, errNotCanonical
}

package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// inTotoLinkCanonical is what in-toto-golang signs and verifies for a link
// file: LoadMetadata's decoding (a map of raw messages, then the signed part
// decoded into in_toto.Link with unknown fields disallowed) followed by
// Metablock.GetSignableRepresentation (cjson.EncodeCanonical of the struct).
func inTotoLinkCanonical(data []byte) ([]byte, error) {
	var raw map[string]*json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if raw["signed"] == nil || raw["signatures"] == nil {
		return nil, fmt.Errorf("missing signed or signatures")
	}
	var sigs []in_toto.Signature
	if err := json.Unmarshal(*raw["signatures"], &sigs); err != nil {
		return nil, err
	}
	var payload map[string]any
	if err := json.Unmarshal(*raw["signed"], &payload); err != nil {
		return nil, err
	}
	if payload["_type"] != "link" {
		return nil, fmt.Errorf("not a link")
	}
	for _, k := range linkKeys {
		if _, ok := payload[k]; !ok {
			return nil, fmt.Errorf("required field %s missing", k)
		}
	}
	var l in_toto.Link
	dec := json.NewDecoder(bytes.NewReader(*raw["signed"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, err
	}
	return (&in_toto.Metablock{Signed: l}).GetSignableRepresentation()
}

// jsonGen writes random JSON texts that exercise every way a string or a
// number can be spelled.
type jsonGen struct{ r *rand.Rand }

var numberLits = []string{"0", "-0", "1", "-1", "42", "1.0", "1.5", "1e3", "1E+2", "2e-0", "-2.50e1", "0.000001", "1e-7",
	"1e20", "1e21", "9007199254740993", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
	"12345678901234567890", "123456789012345678", "0.1", "100e-2", "1e400"}

var runePool = []rune{'a', 'Z', '0', '/', '.', '-', '_', ' ', '"', '\\', '\n', '\t', '\x00', '\x1f', '\x7f', '<', '>', '&',
	'é', 'ß', '日', '\u2028', '\u2029', '\ufeff', '\ufffd', '😀', 0x10ffff}

func (g jsonGen) str() (text, value string) {
	var t strings.Builder
	var v strings.Builder
	t.WriteByte('"')
	for n := g.r.IntN(8); n > 0; n-- {
		if g.r.IntN(12) == 0 { // lone or paired surrogate escapes
			hi := 0xd800 + g.r.IntN(0x400)
			if g.r.IntN(2) == 0 {
				lo := 0xdc00 + g.r.IntN(0x400)
				fmt.Fprintf(&t, `\u%04x\u%04X`, hi, lo)
				v.WriteRune(rune((hi-0xd800)<<10 | (lo - 0xdc00) + 0x10000))
			} else {
				fmt.Fprintf(&t, `\u%04x`, hi)
				v.WriteRune(utf8.RuneError)
			}
			continue
		}
		c := runePool[g.r.IntN(len(runePool))]
		v.WriteRune(c)
		switch {
		case c == '"' || c == '\\':
			t.WriteByte('\\')
			t.WriteRune(c)
		case c < 0x20 || g.r.IntN(6) == 0:
			if c <= 0xffff {
				fmt.Fprintf(&t, `\u%04x`, c)
			} else {
				r1, r2 := 0xd800+((c-0x10000)>>10), 0xdc00+((c-0x10000)&0x3ff)
				fmt.Fprintf(&t, `\u%04x\u%04x`, r1, r2)
			}
		case c == '/' && g.r.IntN(2) == 0:
			t.WriteString(`\/`)
		default:
			t.WriteRune(c)
		}
	}
	t.WriteByte('"')
	return t.String(), v.String()
}

func (g jsonGen) ws() string { return []string{"", " ", "\n  ", "\t", "\r\n"}[g.r.IntN(5)] }

// value writes a random free-form value (environment, byproducts).
func (g jsonGen) value(depth int) string {
	k := g.r.IntN(7)
	if depth > 3 && k >= 5 {
		k = 0
	}
	switch k {
	case 0:
		s, _ := g.str()
		return s
	case 1:
		return numberLits[g.r.IntN(len(numberLits))]
	case 2:
		return strconv.Itoa(g.r.IntN(1 << 20))
	case 3:
		return []string{"true", "false", "null"}[g.r.IntN(3)]
	case 4:
		return strconv.Itoa(-g.r.IntN(1000))
	case 5:
		var parts []string
		for n := g.r.IntN(4); n > 0; n-- {
			parts = append(parts, g.ws()+g.value(depth+1))
		}
		return "[" + strings.Join(parts, ",") + g.ws() + "]"
	default:
		return g.object(depth+1, func() string { return g.value(depth + 1) })
	}
}

// object writes an object of distinct random keys.
func (g jsonGen) object(depth int, val func() string) string {
	seen := map[string]bool{}
	var parts []string
	for n := g.r.IntN(5); n > 0; n-- {
		kt, kv := g.str()
		if seen[kv] {
			continue
		}
		seen[kv] = true
		parts = append(parts, g.ws()+kt+g.ws()+":"+g.ws()+val())
	}
	return "{" + strings.Join(parts, ",") + g.ws() + "}"
}

func (g jsonGen) hex() string {
	const digits = "0123456789abcdefABCDEF"
	b := make([]byte, 1+g.r.IntN(64))
	for i := range b {
		b[i] = digits[g.r.IntN(len(digits))]
	}
	return `"` + string(b) + `"`
}

func (g jsonGen) artifacts() string {
	if g.r.IntN(10) == 0 {
		return "null"
	}
	return g.object(1, func() string {
		algs := []string{`"sha256"`, `"sha512"`, `"gitCommit"`, `"s\u0068a1"`}
		g.r.Shuffle(len(algs), func(i, j int) { algs[i], algs[j] = algs[j], algs[i] })
		var parts []string
		for _, a := range algs[:1+g.r.IntN(3)] {
			parts = append(parts, a+":"+g.hex())
		}
		return "{" + strings.Join(parts, ",") + "}"
	})
}

// link writes a random link Metablock with its keys in random order.
func (g jsonGen) link() string {
	name, _ := g.str()
	var cmd []string
	for n := g.r.IntN(4); n > 0; n-- {
		s, _ := g.str()
		cmd = append(cmd, s)
	}
	command := "[" + strings.Join(cmd, ",") + "]"
	if g.r.IntN(10) == 0 {
		command = "null"
	}
	byproducts := g.object(1, func() string { return g.value(1) })
	env := g.object(1, func() string { return g.value(1) })
	if g.r.IntN(10) == 0 {
		env = "null"
	}
	fields := []string{`"_type":"link"`, `"name":` + name, `"materials":` + g.artifacts(), `"products":` + g.artifacts(),
		`"byproducts":` + byproducts, `"command":` + command, `"environment":` + env}
	g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	sigs := `[{"keyid":"ab12","sig":"00ff"}]`
	top := []string{`"signed":{` + strings.Join(fields, ","+g.ws()) + `}`, `"signatures":` + sigs}
	g.r.Shuffle(len(top), func(i, j int) { top[i], top[j] = top[j], top[i] })
	return g.ws() + "{" + strings.Join(top, ",") + "}" + g.ws()
}

// TestCanonicalMatchesCJSON generates links that spell strings and numbers
// in every way JSON allows and checks the canonical bytes this package
// signs and verifies equal in-toto-golang's (cjson.EncodeCanonical of its
// decoded Link), and that both reject the same numbers.
func TestCanonicalMatchesCJSON(t *testing.T) {
	g := jsonGen{rand.New(rand.NewPCG(1, 2))}
	n := 3000
	if testing.Short() {
		n = 300
	}
	var compared int
	for i := 0; i < n; i++ {
		doc := g.link()
		want, werr := inTotoLinkCanonical([]byte(doc))
		l, err := parseLink([]byte(doc))
		if werr != nil && err == nil {
			t.Fatalf("in-toto-golang rejects (%v) what we accept:\n%s", werr, doc)
		}
		if err != nil {
			// Deliberately stricter (see doc.go): null digest sets and names
			// that collide after path.Clean.
			if werr == nil && !strings.Contains(err.Error(), "null") && !strings.Contains(err.Error(), "path.Clean") {
				t.Fatalf("we reject (%v) what in-toto-golang accepts:\n%s", err, doc)
			}
			continue
		}
		compared++
		if !bytes.Equal(l.Payload, want) {
			t.Fatalf("canonical bytes differ for\n%s\nours:   %q\ncjson:  %q", doc, l.Payload, want)
		}
	}
	if compared < n/3 {
		t.Fatalf("only %d of %d generated links were compared", compared, n)
	}
	t.Logf("%d links compared byte for byte", compared)
}

// TestCanonicalOfGoValues checks the free-form encoder against cjson on
// values decoded by encoding/json, including numbers at the edges.
func TestCanonicalOfGoValues(t *testing.T) {
	for _, lit := range numberLits {
		doc := `{"k":[` + lit + `]}`
		var v any
		jerr := json.Unmarshal([]byte(doc), &v)
		var want []byte
		var werr error
		if jerr == nil {
			want, werr = cjson.EncodeCanonical(v)
		}
		p := newParser([]byte(doc))
		jv, err := p.value()
		if err != nil {
			t.Fatal(err)
		}
		got, gerr := appendCanon(nil, &jv)
		if (jerr != nil || werr != nil) != (gerr != nil) {
			t.Fatalf("%s: cjson err %v/%v, ours %v", lit, jerr, werr, gerr)
		}
		if gerr == nil && !bytes.Equal(got, want) {
			t.Fatalf("%s: ours %s, cjson %s", lit, got, want)
		}
	}
}

// TestPatternFastPaths checks the fast paths of pattern.match agree with
// in-toto-golang's glob matcher.
func TestPatternFastPaths(t *testing.T) {
	patterns := []string{"*", "**", "source/**", "source/*", "source/main.go", "", "a*", "dist/app.tar.gz", "x/**/y",
		"?", "[a-c]*", `\*`, "src/[", "*.go", "source**", "a/b/c***"}
	names := []string{"", "a", "source/main.go", "source/", "source", "sourcex/y", "dist/app.tar.gz", "x/1/y", "*", "[",
		"abc", "src/[", "main.go", "a/b/c", "a/b/cde", "日本"}
	for _, p := range patterns {
		c := compilePattern(p)
		for _, n := range names {
			ok, err := globMatch(p, n)
			if want := ok && err == nil; c.match(n) != want {
				t.Errorf("pattern %q (kind %d) on %q: fast %v, glob %v", p, c.kind, n, !want, want)
			}
		}
	}
	if compilePattern("source/**").kind != patPrefix || compilePattern("a.go").kind != patExact {
		t.Error("fast paths not taken")
	}
}

// TestUnpackRuleMatchesInToto compares rule parsing with in-toto-golang's
// UnpackRule on valid and invalid rules.
func TestUnpackRuleMatchesInToto(t *testing.T) {
	rules := [][]string{
		{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", "fetch.copy"},
		{"match", "a", "in", "src", "with", "materials", "in", "dst/", "from", "s"},
		{"MATCH", "a", "IN", "src", "WITH", "PRODUCTS", "FROM", "s"},
		{"MATCH", "a", "WITH", "PRODUCTS", "IN", "dst", "FROM", "s"},
		{"MATCH", "a", "WITH", "BANANAS", "FROM", "s"},
		{"MATCH", "a", "WITH", "PRODUCTS"},
		{"ALLOW", "x"}, {"Disallow", "*"}, {"REQUIRE", "./a"}, {"CREATE", "a", "b"}, {"DELETE"}, {"frobnicate", "x"},
	}
	for _, r := range rules {
		want, werr := in_toto.UnpackRule(r)
		got, err := unpackRule(r)
		if (werr == nil) != (err == nil) {
			t.Fatalf("%q: in-toto %v, ours %v", r, werr, err)
		}
		if err != nil {
			continue
		}
		typ := map[ruleType]string{ruleMatch: "match", ruleAllow: "allow", ruleCreate: "create", ruleDelete: "delete",
			ruleModify: "modify", ruleDisallow: "disallow", ruleRequire: "require"}[got.Type]
		mine := map[string]string{"type": typ, "pattern": got.Pattern}
		if got.Type == ruleMatch {
			// Ours are stored normalized; compare the normalization separately.
			mine["srcPrefix"], mine["dstPrefix"] = want["srcPrefix"], want["dstPrefix"]
			mine["dstType"], mine["dstName"] = got.DstType, got.DstName
			if normPrefix(want["srcPrefix"]) != got.SrcPrefix || normPrefix(want["dstPrefix"]) != got.DstPrefix {
				t.Errorf("%q: prefixes %q %q vs %q %q", r, got.SrcPrefix, got.DstPrefix, want["srcPrefix"], want["dstPrefix"])
			}
		}
		if !reflect.DeepEqual(mine, want) {
			t.Errorf("%q: ours %v, in-toto %v", r, mine, want)
		}
	}
}

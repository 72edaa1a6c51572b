package verify

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

type ruleType uint8

const (
	ruleMatch ruleType = iota
	ruleAllow
	ruleCreate
	ruleDelete
	ruleModify
	ruleDisallow
	ruleRequire
)

// rule is one artifact rule, unpacked as in-toto-golang's UnpackRule does
// and with its patterns normalized as its VerifyArtifacts does.
type rule struct {
	Text    string // the rule's tokens joined by spaces, for messages
	Type    ruleType
	Pattern string // the rule's pattern as written (REQUIRE uses it as is)
	// filter is path.Clean(Pattern), the pattern every rule type filters
	// the queue with in in-toto-golang.
	filter pattern
	// MATCH only: the pattern (cleaned unless empty), the source and
	// destination prefixes (cleaned, with a trailing slash), the lowercased
	// destination type and the destination step.
	match                pattern
	SrcPrefix, DstPrefix string
	DstType, DstName     string
}

// unpackRule parses a rule exactly as in-toto-golang's UnpackRule (keywords
// case-insensitive, the same token layouts), and rejects the empty rule that
// makes in-toto-golang panic.
func unpackRule(tokens []string) (rule, error) {
	r := rule{Text: strings.Join(tokens, " ")}
	if len(tokens) == 0 {
		return r, fmt.Errorf("[] is empty")
	}
	low := make([]string, len(tokens))
	for i, t := range tokens {
		low[i] = strings.ToLower(t)
	}
	bad := fmt.Errorf("%q is not a valid rule (MATCH <pattern> [IN <prefix>] WITH (MATERIALS|PRODUCTS) [IN <prefix>] FROM <step>, CREATE|DELETE|MODIFY|ALLOW|DISALLOW <pattern>, REQUIRE <name>)", r.Text)
	types := map[string]ruleType{"create": ruleCreate, "delete": ruleDelete, "modify": ruleModify,
		"allow": ruleAllow, "disallow": ruleDisallow, "require": ruleRequire}
	if t, ok := types[low[0]]; ok {
		if len(tokens) != 2 {
			return r, bad
		}
		r.Type, r.Pattern = t, tokens[1]
		r.filter = compilePattern(path.Clean(r.Pattern))
		return r, nil
	}
	if low[0] != "match" {
		return r, bad
	}
	n := len(tokens)
	switch {
	case n == 10 && low[2] == "in" && low[4] == "with" && low[6] == "in" && low[8] == "from":
		r.SrcPrefix, r.DstType, r.DstPrefix, r.DstName = tokens[3], low[5], tokens[7], tokens[9]
	case n == 8 && low[2] == "in" && low[4] == "with" && low[6] == "from":
		r.SrcPrefix, r.DstType, r.DstName = tokens[3], low[5], tokens[7]
	case n == 8 && low[2] == "with" && low[4] == "in" && low[6] == "from":
		r.DstType, r.DstPrefix, r.DstName = low[3], tokens[5], tokens[7]
	case n == 6 && low[2] == "with" && low[4] == "from":
		r.DstType, r.DstName = low[3], tokens[5]
	default:
		return r, bad
	}
	r.Type, r.Pattern = ruleMatch, tokens[1]
	r.filter = compilePattern(path.Clean(r.Pattern))
	mp := r.Pattern
	if mp != "" {
		mp = path.Clean(mp)
	}
	r.match = compilePattern(mp)
	r.SrcPrefix = normPrefix(r.SrcPrefix)
	r.DstPrefix = normPrefix(r.DstPrefix)
	return r, nil
}

// normPrefix is in-toto-golang's prefix normalization: cleaned, with a
// trailing slash, unless empty.
func normPrefix(p string) string {
	if p == "" {
		return ""
	}
	p = path.Clean(p)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// Artifact status of a step: how a material or product relates to the other side.
const (
	unchanged uint8 = iota
	modified        // in materials and products, digests differ
	created         // product not among materials
	deleted         // material not among products
)

// statuses computes, over the cleaned names, which products were created
// and which materials deleted, and which artifacts were modified.
func statuses(mat, prod *artifacts) (ms, ps []uint8) {
	m, p := mat.clean, prod.clean
	ms, ps = make([]uint8, len(m)), make([]uint8, len(p))
	i, j := 0, 0
	for i < len(m) || j < len(p) {
		switch {
		case j == len(p) || (i < len(m) && m[i].name < p[j].name):
			ms[i] = deleted
			i++
		case i == len(m) || p[j].name < m[i].name:
			ps[j] = created
			j++
		default:
			if m[i].digest != p[j].digest {
				ms[i], ps[j] = modified, modified
			}
			i++
			j++
		}
	}
	return ms, ps
}

// maxPerRule bounds how many artifacts one failing rule reports one by one.
const maxPerRule = 20

// ruleEval evaluates one step's rules against its (reference) link.
type ruleEval struct {
	step  string
	links map[string]*parsedLink // reference link of every step that has one
}

// artifactRules applies a step's material rules to its materials and its
// product rules to its products with in-toto-golang's semantics: each
// artifact starts in a queue; MATCH, ALLOW, CREATE, DELETE and MODIFY
// consume the queued artifacts they apply to; DISALLOW fails for any queued
// artifact it matches; REQUIRE fails unless its name is queued. Unlike
// in-toto-golang, it goes on after a failure to report every one.
func (e *ruleEval) artifactRules(st *layoutStep, l *parsedLink) []error {
	ms, ps := statuses(&l.Materials, &l.Products)
	errs := e.apply("material", st.MaterialRules, &l.Materials, ms)
	return append(errs, e.apply("product", st.ProductRules, &l.Products, ps)...)
}

func (e *ruleEval) apply(kind string, rules []rule, arts *artifacts, status []uint8) []error {
	list := arts.clean
	queued := make([]bool, len(list))
	for i := range queued {
		queued[i] = true
	}
	var errs []error
	for ri := range rules {
		r := &rules[ri]
		switch r.Type {
		case ruleMatch:
			dst := e.dst(r)
			if dst == nil {
				continue
			}
			if r.SrcPrefix == "" && r.DstPrefix == "" {
				// Without prefixes the destination path is the (clean)
				// name itself: walk both sorted lists together.
				d, j := dst.clean, 0
				for i, a := range list {
					if !queued[i] || !r.match.match(a.name) {
						continue
					}
					for j < len(d) && d[j].name < a.name {
						j++
					}
					if j < len(d) && d[j].name == a.name && d[j].digest == a.digest {
						queued[i] = false
					}
				}
				continue
			}
			for i, a := range list {
				if !queued[i] {
					continue
				}
				base := strings.TrimPrefix(a.name, r.SrcPrefix)
				if !r.match.match(base) {
					continue
				}
				if j := dst.find(dstPath(r, base)); j >= 0 && dst.clean[j].digest == a.digest {
					queued[i] = false
				}
			}
		case ruleAllow, ruleCreate, ruleDelete, ruleModify:
			want := map[ruleType]uint8{ruleCreate: created, ruleDelete: deleted, ruleModify: modified}[r.Type]
			for i, a := range list {
				if queued[i] && (r.Type == ruleAllow || status[i] == want) && r.filter.match(a.name) {
					queued[i] = false
				}
			}
		case ruleDisallow:
			var bad []int
			for i, a := range list {
				if queued[i] && r.filter.match(a.name) {
					bad = append(bad, i)
				}
			}
			for n, i := range bad {
				if n == maxPerRule {
					errs = append(errs, &ArtifactRuleError{Step: e.step, Kind: kind, Rule: r.Text,
						Reason: fmt.Sprintf("and %d more %ss not allowed by rule %s", len(bad)-maxPerRule, kind, r.Text)})
					break
				}
				errs = append(errs, &ArtifactRuleError{Step: e.step, Kind: kind, Artifact: list[i].name, Rule: r.Text,
					Reason: fmt.Sprintf("not allowed by rule %s (%s)", r.Text, e.explain(kind, rules[:ri], arts, status, i))})
			}
		case ruleRequire:
			if i := arts.find(r.Pattern); i < 0 || !queued[i] {
				why := "is missing"
				if i >= 0 {
					why = "was already consumed by an earlier rule"
				}
				errs = append(errs, &ArtifactRuleError{Step: e.step, Kind: kind, Artifact: r.Pattern, Rule: r.Text,
					Reason: fmt.Sprintf("required by rule %s %s", r.Text, why)})
			}
		}
	}
	return errs
}

// dst returns the artifacts a MATCH rule compares with, or nil when it can
// consume nothing (no such step, no valid link for it, or a destination
// type that is neither materials nor products — as in in-toto-golang).
func (e *ruleEval) dst(r *rule) *artifacts {
	l := e.links[r.DstName]
	if l == nil {
		return nil
	}
	switch r.DstType {
	case "materials":
		return &l.Materials
	case "products":
		return &l.Products
	}
	return nil
}

// dstPath is in-toto-golang's path.Clean(path.Join(dstPrefix, srcBasePath)).
func dstPath(r *rule, base string) string {
	if r.DstPrefix == "" {
		return path.Clean(base)
	}
	return path.Clean(path.Join(r.DstPrefix, base))
}

// explain says why no rule before a DISALLOW consumed artifact i: its status
// and, for each earlier rule whose pattern matched it, why that rule did not
// consume it. Only called on failure.
func (e *ruleEval) explain(kind string, before []rule, arts *artifacts, status []uint8, i int) string {
	a := arts.clean[i]
	var parts []string
	switch status[i] {
	case created:
		parts = append(parts, "created: not among the step's materials")
	case deleted:
		parts = append(parts, "deleted: not among the step's products")
	case modified:
		if kind == "product" {
			parts = append(parts, "changed since materials")
		} else {
			parts = append(parts, "changed in products")
		}
	default:
		if kind == "product" {
			parts = append(parts, "unchanged since materials")
		}
	}
	for ri := range before {
		r := &before[ri]
		switch r.Type {
		case ruleMatch:
			base := strings.TrimPrefix(a.name, r.SrcPrefix)
			if !r.match.match(base) {
				continue
			}
			why := ""
			dp := dstPath(r, base)
			if e.links[r.DstName] == nil {
				why = fmt.Sprintf("step %q has no valid link", r.DstName)
			} else if dst := e.dst(r); dst == nil {
				why = fmt.Sprintf("%q is neither MATERIALS nor PRODUCTS", r.DstType)
			} else if j := dst.find(dp); j < 0 {
				why = fmt.Sprintf("%s has no %s %q", r.DstName, strings.TrimSuffix(r.DstType, "s"), dp)
			} else {
				why = digestDiff(a.digest.String(), dst.clean[j].digest.String())
			}
			parts = append(parts, fmt.Sprintf("%s did not consume it: %s", r.Text, why))
		case ruleCreate, ruleDelete, ruleModify:
			if r.filter.match(a.name) {
				what := map[ruleType]string{ruleCreate: "created", ruleDelete: "deleted", ruleModify: "modified"}[r.Type]
				parts = append(parts, fmt.Sprintf("%s did not consume it: not %s", r.Text, what))
			}
		}
	}
	if len(parts) == 0 {
		return "no earlier rule matched it"
	}
	return strings.Join(parts, "; ")
}

// digestDiff names the algorithms whose digests differ between two digest
// sets (given as their canonical JSON).
func digestDiff(a, b string) string {
	var x, y map[string]string
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return "digests differ"
	}
	var diff, only []string
	for alg, v := range x {
		w, ok := y[alg]
		switch {
		case !ok:
			only = append(only, alg)
		case v != w:
			diff = append(diff, alg)
		}
	}
	for alg := range y {
		if _, ok := x[alg]; !ok {
			only = append(only, alg)
		}
	}
	sort.Strings(diff)
	sort.Strings(only)
	var out []string
	if len(diff) > 0 {
		out = append(out, strings.Join(diff, ", ")+" differs")
	}
	if len(only) > 0 {
		out = append(out, "digest sets differ in algorithms ("+strings.Join(only, ", ")+" on one side only)")
	}
	if len(out) == 0 {
		return "digests differ"
	}
	return strings.Join(out, "; ")
}

package layout

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
)

// maxCommand is how many characters of an expected command Describe prints.
const maxCommand = 100

// DescribeOption tunes Describe.
type DescribeOption func(*describeConfig)

type describeConfig struct {
	names map[string]string
	now   time.Time
}

// WithNames labels keys with functionary names: names maps a key ID to a
// name (see KeyNames). A layout itself only carries key IDs.
func WithNames(names map[string]string) DescribeOption {
	return func(c *describeConfig) {
		for id, n := range names {
			c.names[id] = n
		}
	}
}

// KeyNames inverts a functionary-name-to-key map into key ID to name, for
// WithNames.
func KeyNames(keys map[string]in_toto.Key) map[string]string {
	out := make(map[string]string, len(keys))
	for name, k := range keys {
		out[k.KeyID] = name
	}
	return out
}

// Describe writes a human-readable account of a layout: when it expires, and
// for each step who may perform it (key IDs and, if known, functionary
// names), the threshold, the expected command (truncated) and its artifact
// rules, one per line. Text from the layout is escaped, so a hostile layout
// cannot drive the terminal.
func Describe(w io.Writer, l in_toto.Layout, opts ...DescribeOption) error {
	c := describeConfig{names: map[string]string{}, now: time.Now()}
	for _, o := range opts {
		o(&c)
	}
	b := bufio.NewWriter(w)
	expiry := "expires " + clean(l.Expires)
	if t, err := time.Parse(in_toto.ISO8601DateSchema, l.Expires); err != nil {
		expiry += " (unparsable)"
	} else if !t.After(c.now) {
		expiry += " (EXPIRED)"
	}
	fmt.Fprintf(b, "in-toto layout, %s\n", expiry)
	if l.Readme != "" {
		fmt.Fprintf(b, "readme: %s\n", clean(l.Readme))
	}
	ids := make([]string, 0, len(l.Keys))
	for id := range l.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(b, "functionary keys (%d): %s\n", len(ids), c.who(ids))
	if d, err := attest.ParseReadme(l.Readme); err == nil {
		for _, r := range d.Rotated {
			fmt.Fprintf(b, "rotated out: %s, for %s: its links count only if log %s held them below size %d\n",
				c.who([]string{r.KeyID}), c.who([]string{r.NewKeyID}), strconv.Quote(r.Log.Origin()), r.Log.Size)
		}
		for _, r := range d.Revoked {
			fmt.Fprintf(b, "revoked: %s (reason: %s): every link it signed is refused\n", c.who([]string{r.KeyID}), clean(r.Reason))
		}
	}
	fmt.Fprintf(b, "steps (%d):\n", len(l.Steps))
	for i, s := range l.Steps {
		fmt.Fprintf(b, "\n%d. %s\n", i+1, clean(s.Name))
		fmt.Fprintf(b, "   performed by: %s\n", c.who(s.PubKeys))
		if len(s.CertificateConstraints) > 0 {
			fmt.Fprintf(b, "   or by certificates under %d constraint(s)\n", len(s.CertificateConstraints))
		}
		fmt.Fprintf(b, "   threshold: %d of %d\n", s.Threshold, len(s.PubKeys))
		fmt.Fprintf(b, "   command: %s\n", command(s.ExpectedCommand))
		writeRules(b, "materials", s.ExpectedMaterials)
		writeRules(b, "products", s.ExpectedProducts)
	}
	if len(l.Inspect) > 0 {
		fmt.Fprintf(b, "\ninspections (%d):\n", len(l.Inspect))
		for i, s := range l.Inspect {
			fmt.Fprintf(b, "\n%d. %s\n", i+1, clean(s.Name))
			fmt.Fprintf(b, "   run: %s\n", command(s.Run))
			writeRules(b, "materials", s.ExpectedMaterials)
			writeRules(b, "products", s.ExpectedProducts)
		}
	}
	return b.Flush()
}

// DescribeJSON writes the layout as indented JSON, for --output json.
func DescribeJSON(w io.Writer, l in_toto.Layout) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(l)
}

func (c *describeConfig) who(ids []string) string {
	if len(ids) == 0 {
		return "nobody"
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		short := clean(id)
		if len(short) > 8 {
			short = short[:8]
		}
		if n, ok := c.names[id]; ok {
			parts[i] = fmt.Sprintf("%s (%s)", clean(n), short)
		} else {
			parts[i] = short
		}
	}
	return strings.Join(parts, ", ")
}

func writeRules(w io.Writer, kind string, rules [][]string) {
	fmt.Fprintf(w, "   %s:\n", kind)
	if len(rules) == 0 {
		fmt.Fprintln(w, "     (no rules: anything is accepted)")
	}
	for _, r := range rules {
		tokens := make([]string, len(r))
		for i, t := range r {
			if t == "" || strings.ContainsFunc(t, unicode.IsSpace) {
				tokens[i] = strconv.Quote(t)
			} else {
				tokens[i] = clean(t)
			}
		}
		fmt.Fprintf(w, "     %s\n", strings.Join(tokens, " "))
	}
}

func command(cmd []string) string {
	if len(cmd) == 0 {
		return "(none)"
	}
	s := []rune(clean(strings.Join(cmd, " ")))
	if len(s) > maxCommand {
		return string(s[:maxCommand]) + "…"
	}
	return string(s)
}

// clean escapes newlines, tabs and every other non-printable character.
func clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == unicode.ReplacementChar || !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

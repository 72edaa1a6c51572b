package layout

import (
	"bytes"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"
)

func TestDescribeHostileAndExpired(t *testing.T) {
	l := in_toto.Layout{
		Type:    "layout",
		Expires: "2001-01-01T00:00:00Z",
		Readme:  "line\n\x1b[31mred",
		Keys:    map[string]in_toto.Key{},
		Steps: []in_toto.Step{{
			Type:            "step",
			PubKeys:         []string{"0123456789abcdef"},
			Threshold:       1,
			ExpectedCommand: []string{"sh", "-c", strings.Repeat("x", 200) + "\x07"},
			SupplyChainItem: in_toto.SupplyChainItem{
				Name:             "a.b\x1b]0;title\x07",
				ExpectedProducts: [][]string{{"ALLOW", "dir with space/**"}},
			},
		}},
		Inspect: []in_toto.Inspection{{
			Type:            "inspection",
			Run:             []string{"ls"},
			SupplyChainItem: in_toto.SupplyChainItem{Name: "check", ExpectedMaterials: [][]string{{"DISALLOW", "*"}}},
		}},
	}
	var b bytes.Buffer
	if err := Describe(&b, l); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("control characters reached the output: %q", out)
	}
	for _, want := range []string{
		"(EXPIRED)",
		`readme: line\n\u001b[31mred`,
		`1. a.b\u001b]0;title\u0007`,
		"performed by: 01234567\n",
		"     (no rules: anything is accepted)\n",
		`     ALLOW "dir with space/**"`,
		"inspections (1):",
		"   run: ls\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cmd := out[strings.Index(out, "command: ")+len("command: "):]
	cmd = cmd[:strings.IndexByte(cmd, '\n')]
	if n := len([]rune(cmd)); n != maxCommand+1 || !strings.HasSuffix(cmd, "…") {
		t.Errorf("command %q (%d runes) not truncated to %d + …", cmd, n, maxCommand)
	}
}

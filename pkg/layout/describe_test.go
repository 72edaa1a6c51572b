package layout

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"
)

// TestDescribeGolden compares Describe's output for the go-build example with
// testdata/go-build.describe.txt (-update rewrites it).
func TestDescribeGolden(t *testing.T) {
	l, f := generate(t, "../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	var b bytes.Buffer
	if err := Describe(&b, *l, WithNames(KeyNames(testKeys(t, f)))); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "go-build.describe.txt")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("Describe output differs from %s:\n%s", golden, b.String())
	}
	for _, line := range []string{
		"in-toto layout, expires 2100-01-01T00:00:00Z\n",
		"3. test.unit\n",
		"   threshold: 1 of 1\n",
		"   command: go test -count=1 ./...\n",
		"     MATCH source/** WITH PRODUCTS FROM test.unit\n",
		"     REQUIRE dist/app.tar.gz\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("Describe output lacks %q", line)
		}
	}
	if id := testKey(t, "tester").KeyID; !strings.Contains(b.String(), "performed by: tester ("+id[:8]+")\n") {
		t.Errorf("test steps do not name tester and key %s", id[:8])
	}
}

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

func TestDescribeJSON(t *testing.T) {
	l, _ := generate(t, "../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	var b bytes.Buffer
	if err := DescribeJSON(&b, *l); err != nil {
		t.Fatal(err)
	}
	var back in_toto.Layout
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, *l) {
		t.Error("JSON form does not round-trip")
	}
}

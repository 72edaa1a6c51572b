package generate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
)

// TestDescribeGolden compares Describe's output for the go-build example with
// testdata/go-build.describe.txt (-update rewrites it).
func TestDescribeGolden(t *testing.T) {
	l, f := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	var b bytes.Buffer
	if err := layout.Describe(&b, *l, layout.WithNames(layout.KeyNames(testKeys(t, f)))); err != nil {
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

func TestDescribeJSON(t *testing.T) {
	l, _ := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	var b bytes.Buffer
	if err := layout.DescribeJSON(&b, *l); err != nil {
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

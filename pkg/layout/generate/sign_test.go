package generate

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/layout"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/reject/rejecttest"
)

func TestSignSeveralOwners(t *testing.T) {
	ctx := context.Background()
	l, _ := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	mb, err := layout.Sign(ctx, *l, testSigner(t, "owner"), testSigner(t, "owner2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mb.Signatures) != 2 {
		t.Fatalf("%d signatures, want 2", len(mb.Signatures))
	}
	// in-toto-golang verifies each owner's signature with its own code.
	for _, o := range []string{"owner", "owner2"} {
		if err := mb.VerifySignature(testKey(t, o)); err != nil {
			t.Errorf("owner %s: %v", o, err)
		}
	}
	if err := mb.VerifySignature(testKey(t, "builder")); err == nil {
		t.Error("a non-owner's key verified")
	}
	// A layout changed after signing no longer verifies.
	changed := *l
	changed.Steps = append([]in_toto.Step(nil), l.Steps...)
	changed.Steps[3].ExpectedProducts = [][]string{{"ALLOW", "*"}}
	tampered := &in_toto.Metablock{Signed: changed, Signatures: mb.Signatures}
	if err := tampered.VerifySignature(testKey(t, "owner")); err == nil {
		t.Error("a modified layout verified")
	}
}

func TestSignErrors(t *testing.T) {
	ctx := context.Background()
	l, _ := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	if _, err := layout.Sign(ctx, *l); !errors.Is(err, layout.ErrLayout) {
		t.Errorf("no owner: %v", err)
	}
	if _, err := layout.Sign(ctx, *l, testSigner(t, "owner"), testSigner(t, "owner")); !errors.Is(err, layout.ErrLayout) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("same owner twice: %v", err)
	}
	for name, edit := range map[string]func(*in_toto.Layout){
		"empty rule": func(l *in_toto.Layout) { l.Steps[0].ExpectedMaterials = [][]string{{}} },
		"bad rule":   func(l *in_toto.Layout) { l.Steps[0].ExpectedMaterials = [][]string{{"MATCH", "*"}} },
		"unknown target": func(l *in_toto.Layout) {
			l.Steps[1].ExpectedProducts = [][]string{{"MATCH", "*", "WITH", "PRODUCTS", "FROM", "nope"}}
		},
		"key not in keys": func(l *in_toto.Layout) { l.Steps[0].PubKeys = []string{strings.Repeat("ab", 32)} },
		"threshold zero":  func(l *in_toto.Layout) { l.Steps[0].Threshold = 0 },
		"threshold high":  func(l *in_toto.Layout) { l.Steps[0].Threshold = 2 },
		"no key":          func(l *in_toto.Layout) { l.Steps[0].PubKeys = nil },
		"duplicate step":  func(l *in_toto.Layout) { l.Steps[1].Name = l.Steps[0].Name },
		"bad expiry":      func(l *in_toto.Layout) { l.Expires = "tomorrow" },
		"wrong type":      func(l *in_toto.Layout) { l.Type = "link" },
		"empty inspection": func(l *in_toto.Layout) {
			l.Inspect = []in_toto.Inspection{{Type: "inspection", SupplyChainItem: in_toto.SupplyChainItem{Name: "i", ExpectedProducts: [][]string{{}}}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := cloneLayout(t, l)
			edit(c)
			if _, err := layout.Sign(ctx, *c, testSigner(t, "owner")); !errors.Is(err, layout.ErrLayout) {
				t.Errorf("signed an invalid layout: %v", err)
			}
		})
	}
}

func cloneLayout(t *testing.T, l *in_toto.Layout) *in_toto.Layout {
	t.Helper()
	var c in_toto.Layout
	if err := json.Unmarshal(mustJSON(t, l), &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestWriteLoad(t *testing.T) {
	l, _ := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	mb, err := layout.Sign(context.Background(), *l, testSigner(t, "owner"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := layout.Write(filepath.Join(dir, "missing", "root.layout"), mb); err == nil {
		t.Error("wrote into a directory that does not exist")
	}
	if err := layout.Write(filepath.Join(dir, "link"), &in_toto.Metablock{Signed: in_toto.Link{}}); !errors.Is(err, layout.ErrLayout) {
		t.Errorf("wrote a link as a layout: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed writes left %v behind", entries)
	}
	path := filepath.Join(dir, "root.layout")
	if err := layout.Write(path, mb); err != nil {
		t.Fatal(err)
	}
	got, err := layout.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, mb) {
		t.Error("Load(Write(mb)) differs from mb")
	}
	if err := got.VerifySignature(testKey(t, "owner")); err != nil {
		t.Errorf("loaded layout: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	l, _ := generate(t, "../../../examples/go-build/pipeline.yaml", exampleFunctionaries)
	mb, err := layout.Sign(context.Background(), *l, testSigner(t, "owner"))
	if err != nil {
		t.Fatal(err)
	}
	good := string(mustJSON(t, mb))
	dir := t.TempDir()
	for _, c := range []struct{ name, doc, want string }{
		{"not json", "{", "not JSON"},
		{"dsse", `{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`, "DSSE"},
		{"unknown top field", strings.Replace(good, `"signed"`, `"extra": 1, "signed"`, 1), `unknown field "extra"`},
		{"null signed", `{"signed": null, "signatures": []}`, "required"},
		{"no signatures", `{"signed": {"_type": "layout"}}`, "required"},
		{"link", `{"signed": {"_type": "link"}, "signatures": []}`, `not "layout"`},
		{"missing readme", strings.Replace(good, `"readme"`, `"readme_"`, 1), "signed.readme"},
		{"unknown layout field", strings.Replace(good, `"readme"`, `"owner": "me", "readme"`, 1), `unknown field "owner"`},
		{"empty rule", strings.Replace(good, `"expected_materials": [`, `"expected_materials": [[],`, 1), "empty artifact rule"},
		{"bad signature", strings.Replace(good, `"sig": "`, `"sig": "zz`, 1), "signatures"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(p, []byte(c.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := layout.Load(p)
			if !errors.Is(err, layout.ErrLayout) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("Load: %v; want ErrLayout naming the file and %q", err, c.want)
			}
			rejecttest.Is(t, "Load", err, reject.ErrMalformed)
		})
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, layout.MaxLayoutSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := layout.Load(big); !errors.Is(err, layout.ErrLayout) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	// A small valid seed: the fuzzer minimizes every new input it finds, and
	// minimizing mutants of a full example layout takes most of its time.
	k := testKey(f, "alice")
	l := in_toto.Layout{
		Type:    "layout",
		Expires: "2100-01-01T00:00:00Z",
		Keys:    map[string]in_toto.Key{k.KeyID: k},
		Inspect: []in_toto.Inspection{},
		Steps: []in_toto.Step{{
			Type: "step", PubKeys: []string{k.KeyID}, Threshold: 1, ExpectedCommand: []string{"go", "test"},
			SupplyChainItem: in_toto.SupplyChainItem{
				Name:              "t.s",
				ExpectedMaterials: [][]string{{"MATCH", "w/**", "WITH", "PRODUCTS", "FROM", "t.s"}, {"DISALLOW", "*"}},
				ExpectedProducts:  [][]string{{"REQUIRE", "w/a"}, {"ALLOW", "w/**"}, {"DISALLOW", "*"}},
			},
		}},
	}
	mb, err := layout.Sign(context.Background(), l, testSigner(f, "owner"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mustJSON(f, mb))
	f.Add([]byte(`{"signed":{"_type":"layout","steps":[{"_type":"step","name":"a","pubkeys":[],"threshold":1,"expected_command":[],"expected_materials":[[]],"expected_products":[]}],"inspect":[],"keys":{},"expires":"2100-01-01T00:00:00Z","readme":""},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mb, err := layout.Parse(data)
		if err != nil {
			if !errors.Is(err, layout.ErrLayout) {
				t.Fatalf("error %v does not wrap ErrLayout", err)
			}
			return
		}
		l, ok := mb.Signed.(in_toto.Layout)
		if !ok {
			t.Fatalf("parsed %T", mb.Signed)
		}
		if err := layout.Validate(l); err != nil {
			t.Fatalf("parsed an invalid layout: %v", err)
		}
		// What parses is described without failing and round-trips.
		if err := layout.Describe(&strings.Builder{}, l); err != nil {
			t.Fatal(err)
		}
		again, err := layout.Parse(mustJSON(t, mb))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(again, mb) {
			t.Fatal("round trip changed the layout")
		}
	})
}

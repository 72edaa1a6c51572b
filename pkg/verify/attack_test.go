package verify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

func TestGoodChain(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	v, err := ours(t, layout, links, Options{RunID: "run-1", Artifacts: map[string]run.DigestSet{output: digest("tarball")}})
	if err != nil {
		t.Fatalf("good chain rejected: %v", err)
	}
	if len(v.Warnings) != 0 {
		t.Errorf("warnings on the good chain: %q", v.Warnings)
	}
	if len(v.Steps) != 3 || !v.Steps[1].Passed || len(v.Steps[1].Links) != 2 {
		t.Errorf("step results: %+v", v.Steps)
	}
	if err := inToto(t, layout, links); err != nil {
		t.Fatalf("in-toto-golang rejects the good chain: %v", err)
	}
	// The verdict is JSON the CLI prints.
	out, err := json.Marshal(v)
	if err != nil || !strings.Contains(string(out), `"passed":true`) || !strings.Contains(string(out), `"failures":[]`) {
		t.Errorf("verdict JSON %s, %v", out, err)
	}
}

// attack is one tampered chain: the category it must fail with, words its
// messages must contain, and whether in-toto-golang (deliberately) accepts it.
type attack struct {
	name         string
	mutate       func(c *chain)
	opts         Options
	want         error
	words        []string
	inTotoAccept bool
}

func TestAttacks(t *testing.T) {
	id := func(n string) string { return keyID(t, n)[:8] }
	declared := map[string]run.DigestSet{output: digest("tarball")}
	attacks := []attack{{
		name: "product changed after its link was signed (link edited)",
		mutate: func(c *chain) {
			c.tamperLink = func(step, _ string, signed map[string]any) {
				if step == "build.compile" {
					signed["products"].(map[string]any)[output] = map[string]any{"sha256": strings.Repeat("ab", 32)}
				}
			}
		},
		want:  ErrSignature,
		words: []string{`step "build.compile"`, id("dave"), "does not verify"},
	}, {
		name:  "product changed after its link was signed (declared output differs)",
		opts:  Options{Artifacts: map[string]run.DigestSet{output: digest("trojan tarball")}},
		want:  ErrOutputArtifact,
		words: []string{`output artifact "dist/app.tar.gz"`, `step "build.compile"`, "sha256"},
		// in-toto-golang has no notion of declared outputs.
		inTotoAccept: true,
	}, {
		name: "product changed between steps (source modified after fetch)",
		mutate: func(c *chain) {
			s := c.steps["test.unit"]
			s.Materials["source/main.go"] = digest("package main // backdoor")
			s.Products["source/main.go"] = digest("package main // backdoor")
			c.steps["test.unit"] = s
		},
		want: ErrArtifactRule,
		words: []string{`step "test.unit": product "source/main.go" not allowed by rule DISALLOW * (unchanged since materials; ` +
			`MATCH source/** WITH PRODUCTS FROM fetch.copy did not consume it: sha256 differs)`},
	}, {
		name:   "link signed by a key the layout does not allow for that step",
		mutate: func(c *chain) { c.signers["build.compile"] = []string{"mallory"} },
		want:   ErrUnauthorized,
		words:  []string{`step "build.compile"`, id("mallory"), "does not authorize"},
	}, {
		name:   "link signed by another step's functionary",
		mutate: func(c *chain) { c.signers["build.compile"] = []string{"alice"} },
		want:   ErrUnauthorized,
		words:  []string{`step "build.compile"`, id("alice")},
	}, {
		name:   "missing step",
		mutate: func(c *chain) { delete(c.signers, "fetch.copy") },
		want:   ErrMissingStep,
		words:  []string{`step "fetch.copy": no link found`, "fetch.copy." + id("carol") + ".link"},
	}, {
		name:   "threshold of 2 not met",
		mutate: func(c *chain) { c.signers["test.unit"] = []string{"alice"} },
		want:   ErrThreshold,
		words:  []string{`step "test.unit": threshold 2 not met: 1 valid link`, id("alice")},
	}, {
		name:   "expired layout",
		mutate: func(c *chain) { c.layout.Expires = "2020-01-01T00:00:00Z" },
		want:   ErrExpired,
		words:  []string{"layout expired on 2020-01-01T00:00:00Z"},
	}, {
		name:   "layout signed by a non-owner",
		mutate: func(c *chain) { c.owners = []string{"mallory"} },
		want:   ErrLayoutSignature,
		words:  []string{"owner in-toto key " + id("owner"), "no signature by this key"},
	}, {
		name: "layout modified after signing",
		mutate: func(c *chain) {
			c.tamperLayout = func(signed map[string]any) {
				steps := signed["steps"].([]any)
				steps[2].(map[string]any)["expected_products"] = []any{[]any{"ALLOW", "*"}}
			}
		},
		want:  ErrLayoutSignature,
		words: []string{"owner in-toto key " + id("owner"), "does not verify"},
	}, {
		name: "link modified after signing",
		mutate: func(c *chain) {
			c.tamperLink = func(step, signer string, signed map[string]any) {
				if step == "test.unit" && signer == "bob" {
					signed["command"] = []any{"true"}
				}
			}
		},
		want:  ErrSignature,
		words: []string{`step "test.unit"`, id("bob"), "does not verify"},
	}, {
		name: "link replayed from a different run (different run-id and products)",
		mutate: func(c *chain) {
			s := c.steps["build.compile"]
			s.Products = sourceArtifacts()
			s.Products[output] = digest("last week's tarball")
			c.steps["build.compile"] = s
			name, data := c.signLink("build.compile", "dave", "run-0")
			c.extra = Memory{name: data}
			delete(c.signers, "build.compile")
		},
		opts:  Options{RunID: "run-1", Artifacts: declared},
		want:  ErrRunMismatch,
		words: []string{`step "build.compile"`, `comes from run "run-0", expected run "run-1"`, `output artifact "dist/app.tar.gz"`},
		// in-toto-golang has no run binding: the replayed link satisfies ALLOW dist/**.
		inTotoAccept: true,
	}, {
		name: "link replayed from a different run, no run given",
		mutate: func(c *chain) {
			name, data := c.signLink("build.compile", "dave", "run-0")
			c.extra = Memory{name: data}
			delete(c.signers, "build.compile")
		},
		want:         ErrRunMismatch,
		words:        []string{`comes from run "run-0", expected run "run-1"`},
		inTotoAccept: true,
	}, {
		name: "step creates an artifact its rules do not allow",
		mutate: func(c *chain) {
			s := c.steps["test.unit"]
			s.Products["source/evil.go"] = digest("evil")
			c.steps["test.unit"] = s
		},
		want: ErrArtifactRule,
		words: []string{`step "test.unit": product "source/evil.go" not allowed by rule DISALLOW * (created: not among the step's materials; ` +
			`MATCH source/** WITH PRODUCTS FROM fetch.copy did not consume it: fetch.copy has no product "source/evil.go")`},
	}, {
		name: "step deletes an artifact its rules do not allow",
		mutate: func(c *chain) {
			s := c.steps["test.unit"]
			delete(s.Products, "source/go.mod")
			c.steps["test.unit"] = s
		},
		want: ErrArtifactRule,
		words: []string{`step "test.unit": material "source/go.mod" not allowed by rule DISALLOW * (deleted: not among the step's products; ` +
			`MATCH source/** WITH PRODUCTS FROM test.unit did not consume it: test.unit has no product "source/go.mod")`},
	}, {
		name: "writable step creates an artifact outside dist",
		mutate: func(c *chain) {
			s := c.steps["build.compile"]
			s.Products["bin/app"] = digest("app")
			c.steps["build.compile"] = s
		},
		want:  ErrArtifactRule,
		words: []string{`step "build.compile": product "bin/app" not allowed by rule DISALLOW * (created`},
	}, {
		name: "required output missing",
		mutate: func(c *chain) {
			s := c.steps["build.compile"]
			delete(s.Products, output)
			c.steps["build.compile"] = s
		},
		want:  ErrArtifactRule,
		words: []string{`step "build.compile": product "dist/app.tar.gz" required by rule REQUIRE dist/app.tar.gz is missing`},
	}, {
		name: "material does not match the previous step's product",
		mutate: func(c *chain) {
			s := c.steps["build.compile"]
			s.Materials["source/main.go"] = digest("package main // other")
			c.steps["build.compile"] = s
		},
		want: ErrArtifactRule,
		words: []string{`step "build.compile": material "source/main.go" not allowed by rule DISALLOW * (changed in products; ` +
			`MATCH source/** WITH PRODUCTS FROM fetch.copy did not consume it: sha256 differs)`},
	}, {
		name: "digest sets that do not overlap (sha512 only vs sha256)",
		mutate: func(c *chain) {
			s := c.steps["test.unit"]
			s.Products["source/main.go"] = run.DigestSet{"sha512": strings.Repeat("cd", 64)}
			c.steps["test.unit"] = s
		},
		want: ErrArtifactRule,
		words: []string{`step "test.unit": product "source/main.go" not allowed by rule DISALLOW *`,
			"digest sets differ in algorithms (sha256, sha512 on one side only)"},
	}, {
		name: "link whose step name is not in the layout",
		mutate: func(c *chain) {
			c.steps["deploy.prod"] = run.Step{Name: "deploy.prod", Materials: run.Artifacts{}, Products: run.Artifacts{}}
			c.signers["deploy.prod"] = []string{"dave"}
		},
		want:         ErrUnknownStep,
		words:        []string{"deploy.prod." + id("dave") + ".link", `signed step name "deploy.prod"`, "names no step of the layout"},
		inTotoAccept: true,
	}, {
		name: "link signed for another step under this step's file name",
		mutate: func(c *chain) {
			// dave may perform test.unit too; a link he signed for another
			// step (same artifacts) is passed off as his test.unit link.
			c.layout.Steps[1].PubKeys = append(c.layout.Steps[1].PubKeys, keyID(t, "dave"))
			s := c.steps["test.unit"]
			s.Name = "lint.vet"
			_, data := c.signStep(s, "dave", "run-1")
			c.extra = Memory{"test.unit." + keyID(t, "dave")[:8] + ".link": data}
			c.signers["test.unit"] = []string{"alice"}
		},
		want:         ErrUnknownStep,
		words:        []string{"test.unit." + id("dave") + ".link", `signed for step "lint.vet", but its file name says step "test.unit"`},
		inTotoAccept: true,
	}}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			c := newChain(t)
			if a.mutate != nil {
				a.mutate(c)
			}
			layout, links := c.build()
			v, err := ours(t, layout, links, a.opts)
			if err == nil {
				t.Fatal("attack accepted")
			}
			if !errors.Is(err, a.want) {
				t.Fatalf("error %v is not %v", err, a.want)
			}
			if !errors.Is(err, ErrVerification) {
				t.Error("not under ErrVerification")
			}
			text := failureText(v)
			for _, w := range a.words {
				if !strings.Contains(text, w) {
					t.Errorf("failures do not say %q:\n%s", w, text)
				}
			}
			ierr := inToto(t, layout, links)
			if a.inTotoAccept && ierr != nil {
				t.Errorf("in-toto-golang was expected to accept (a deliberate difference), but: %v", ierr)
			}
			if !a.inTotoAccept && ierr == nil {
				t.Error("in-toto-golang accepts the attack; verdicts differ")
			}
		})
	}
}

func TestDisagreement(t *testing.T) {
	c := newChain(t)
	c.layout.Steps[1].Threshold = 1
	c.tamperLink = nil
	layout, links := c.build()
	// bob's link reports another go.mod (validly signed by bob).
	s := c.steps["test.unit"]
	s.Materials["source/go.mod"] = digest("module y")
	s.Products["source/go.mod"] = digest("module y")
	c.steps["test.unit"] = s
	name, data := c.signLink("test.unit", "bob", "run-1")
	links[name] = data
	v, err := ours(t, layout, links, Options{})
	if !errors.Is(err, ErrDisagreement) || !strings.Contains(failureText(v), `report different materials (first difference: "source/go.mod")`) {
		t.Fatalf("want disagreement naming source/go.mod, got %v", err)
	}
	if inToto(t, layout, links) == nil {
		t.Error("in-toto-golang accepts disagreeing links")
	}
}

func TestLayoutThreshold(t *testing.T) {
	c := newChain(t)
	c.owners = []string{"owner", "owner2"}
	layout, links := c.build()
	owners := []signing.Verifier{verifier(t, "owner"), verifier(t, "owner2"), verifier(t, "mallory")}
	opts := Options{WithoutArtifactUnsafe: true}
	_, err := Layout(t.Context(), layout, owners, links, opts)
	if !errors.Is(err, ErrLayoutSignature) || !strings.Contains(err.Error(), keyID(t, "mallory")[:8]) {
		t.Fatalf("every owner key must sign by default; got %v", err)
	}
	opts.LayoutThreshold = 2
	if v, err := Layout(t.Context(), layout, owners, links, opts); err != nil || len(v.Warnings) == 0 {
		t.Fatalf("2 of 3 owners signed: %v (warnings %q)", err, v.Warnings)
	}
	opts.LayoutThreshold = 3
	if _, err := Layout(t.Context(), layout, owners, links, opts); !errors.Is(err, ErrLayoutSignature) || !strings.Contains(err.Error(), "2 of 3 owner keys") {
		t.Fatalf("threshold 3: %v", err)
	}
	if _, err := Layout(t.Context(), layout, nil, links, Options{WithoutArtifactUnsafe: true}); !errors.Is(err, ErrLayoutSignature) {
		t.Fatalf("no owner keys: %v", err)
	}
}

func TestRefusedFeatures(t *testing.T) {
	cases := map[string]func(c *chain){
		"inspections": func(c *chain) {
			c.layout.Inspect = []in_toto.Inspection{{Type: "inspection", Run: []string{"rm", "-rf", "/"},
				SupplyChainItem: in_toto.SupplyChainItem{Name: "untar"}}}
		},
		"cert_constraints": func(c *chain) {
			c.layout.Steps[0].CertificateConstraints = []in_toto.CertificateConstraint{{CommonName: "*"}}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := newChain(t)
			mutate(c)
			layout, links := c.build()
			_, err := ours(t, layout, links, Options{})
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), name) {
				t.Fatalf("want ErrUnsupported naming %s, got %v", name, err)
			}
		})
	}
	t.Run("sublayout", func(t *testing.T) {
		c := newChain(t)
		layout, links := c.build()
		links["build.compile."+keyID(t, "dave")[:8]+".link"] = layout
		_, err := ours(t, layout, links, Options{})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "sublayout") {
			t.Fatalf("want ErrUnsupported sublayout, got %v", err)
		}
	})
}

func TestMalformedInputs(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	name := "fetch.copy." + keyID(t, "carol")[:8] + ".link"
	good := links[name]
	cases := map[string][]byte{
		"duplicate key":        []byte(strings.Replace(string(good), `"name":`, `"name": "x", "name":`, 1)),
		"case-variant key":     []byte(strings.Replace(string(good), `"name":`, `"NAME":`, 1)),
		"unknown top key":      []byte(strings.Replace(string(good), `"signed":`, `"extra": 1, "signed":`, 1)),
		"not hex signature":    []byte(strings.Replace(string(good), `"sig": "`, `"sig": "zz`, 1)),
		"truncated":            good[:len(good)/2],
		"trailing data":        append(append([]byte{}, good...), " {}"...),
		"null digest set":      []byte(strings.Replace(string(good), `"source/go.mod": {`, `"source/go.mod": null, "x": {`, 1)),
		"float in byproducts":  []byte(strings.Replace(string(good), `"return-value": 0`, `"return-value": 0.5`, 1)),
		"DSSE envelope":        []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`),
		"unknown link _type":   []byte(strings.Replace(string(good), `"_type": "link"`, `"_type": "lnk"`, 1)),
		"artifacts collide":    []byte(strings.Replace(string(good), `"source/go.mod": {`, `"./source/main.go": {"sha256":"00"}, "source/go.mod": {`, 1)),
		"not an object at all": []byte(`[]`),
	}
	for what, data := range cases {
		t.Run(what, func(t *testing.T) {
			if string(data) == string(good) {
				t.Fatal("mutation did not apply")
			}
			l := Memory{}
			for n, d := range links {
				l[n] = d
			}
			l[name] = data
			v, err := ours(t, layout, l, Options{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected category: %v", err)
			}
			if !strings.Contains(failureText(v), name) {
				t.Errorf("failure does not name the file: %s", failureText(v))
			}
		})
	}
	t.Run("layout too large", func(t *testing.T) {
		_, err := ours(t, make([]byte, MaxFileSize+1), links, Options{})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "64 MiB") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("layout duplicate key", func(t *testing.T) {
		bad := strings.Replace(string(layout), `"readme":`, `"readme": "", "readme":`, 1)
		if _, err := ours(t, []byte(bad), links, Options{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "duplicate key") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestDirSource(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	dir := t.TempDir()
	for n, d := range links {
		writeFile(t, dir, n, d)
	}
	writeFile(t, dir, "README.md", []byte("not a link: ignored"))
	if _, err := ours(t, layout, Dir(dir), Options{}); err != nil {
		t.Fatalf("dir source: %v", err)
	}
	owners := []signing.Verifier{verifier(t, "owner")}
	if _, err := Layout(t.Context(), layout, owners, Dir(dir+"/nope"), Options{WithoutArtifactUnsafe: true}); err == nil {
		t.Fatal("missing directory accepted")
	}
}

func TestExpiryUsesNow(t *testing.T) {
	c := newChain(t)
	layout, links := c.build()
	if _, err := ours(t, layout, links, Options{Now: time.Date(2098, 12, 31, 23, 59, 59, 0, time.UTC)}); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	_, err := ours(t, layout, links, Options{Now: time.Date(2099, 1, 1, 0, 0, 1, 0, time.UTC)})
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "layout expired on "+farFuture) {
		t.Fatalf("want expired a second after expiry, got %v", err)
	}
}

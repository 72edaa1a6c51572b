package verifytest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Output is the output artifact the last step of a generated chain produces.
const Output = "dist/app.tar.gz"

// Options size a generated chain.
type Options struct {
	Steps     int // layout steps (at least 2)
	Artifacts int // materials and products per step
	// Functionaries is how many distinct functionary keys sign the links
	// (round robin over steps); default 5.
	Functionaries int
	KeyType       signing.KeyType // default ed25519
	RunID         string          // default "bench-run"
	Expires       string          // default 2099-01-01T00:00:00Z
}

// Chain is a generated, signed supply chain.
type Chain struct {
	Layout   []byte            // the layout Metablock, signed by Owner
	Owner    signing.Verifier  // the owner's public key
	OwnerPEM []byte            // the same, PEM (PKIX)
	Links    map[string][]byte // link files by name
	// Outputs is the last step's output artifact and its digest.
	Outputs map[string]run.DigestSet
	RunID   string
}

func digest(s string) run.DigestSet {
	d := sha256.Sum256([]byte(s))
	return run.DigestSet{"sha256": hex.EncodeToString(d[:])}
}

// Generate makes a chain of o.Steps steps. Every step reads and writes the
// same o.Artifacts source files (step 0 allows them, later steps MATCH
// them with the previous step's products); the last step also writes
// dist/app.tar.gz (REQUIRE, ALLOW dist/**), replacing one source file so it
// keeps o.Artifacts products.
func Generate(ctx context.Context, o Options) (*Chain, error) {
	if o.Steps < 2 || o.Artifacts < 2 {
		return nil, fmt.Errorf("need at least 2 steps and 2 artifacts")
	}
	if o.Functionaries <= 0 {
		o.Functionaries = 5
	}
	if o.KeyType == "" {
		o.KeyType = signing.ED25519
	}
	if o.RunID == "" {
		o.RunID = "bench-run"
	}
	if o.Expires == "" {
		o.Expires = "2099-01-01T00:00:00Z"
	}
	newSigner := func() (signing.Signer, error) {
		k, err := signing.Generate(o.KeyType)
		if err != nil {
			return nil, err
		}
		return signing.NewSigner(k)
	}
	owner, err := newSigner()
	if err != nil {
		return nil, err
	}
	funcs := make([]signing.Signer, o.Functionaries)
	keys := map[string]in_toto.Key{}
	for i := range funcs {
		if funcs[i], err = newSigner(); err != nil {
			return nil, err
		}
		k, err := signing.InTotoKey(funcs[i].Public())
		if err != nil {
			return nil, err
		}
		keys[k.KeyID] = k
	}
	source := run.Artifacts{}
	for i := 0; i < o.Artifacts; i++ {
		name := fmt.Sprintf("source/pkg%02d/file%05d.go", i%50, i)
		source[name] = digest(name)
	}
	last := run.Artifacts{}
	for n, d := range source {
		last[n] = d
	}
	delete(last, "source/pkg00/file00000.go")
	last[Output] = digest("tarball")

	c := &Chain{Links: map[string][]byte{}, RunID: o.RunID, Outputs: map[string]run.DigestSet{Output: last[Output]}}
	layout := in_toto.Layout{Type: "layout", Expires: o.Expires, Keys: keys, Inspect: []in_toto.Inspection{},
		Readme: fmt.Sprintf("generated: %d steps x %d artifacts", o.Steps, o.Artifacts)}
	rec := &run.Record{Pipeline: "bench", RunID: o.RunID}
	prev := ""
	for i := 0; i < o.Steps; i++ {
		name := fmt.Sprintf("task%02d.step", i)
		cmd := []string{"/bin/sh", "-c", "make " + name}
		var mat, prod [][]string
		products := source
		switch {
		case i == 0:
			mat = [][]string{{"ALLOW", "source/**"}, {"DISALLOW", "*"}}
			prod = [][]string{{"MATCH", "source/**", "WITH", "MATERIALS", "FROM", name}, {"DISALLOW", "*"}}
		case i == o.Steps-1:
			mat = [][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", prev}, {"DISALLOW", "*"}}
			prod = [][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", prev}, {"REQUIRE", Output},
				{"ALLOW", "dist/**"}, {"DISALLOW", "*"}}
			products = last
		default:
			mat = [][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", prev}, {"DISALLOW", "*"}}
			prod = [][]string{{"MATCH", "source/**", "WITH", "PRODUCTS", "FROM", prev}, {"DISALLOW", "*"}}
		}
		f := funcs[i%len(funcs)]
		id, err := f.KeyID()
		if err != nil {
			return nil, err
		}
		layout.Steps = append(layout.Steps, in_toto.Step{Type: "step", PubKeys: []string{id}, ExpectedCommand: cmd, Threshold: 1,
			SupplyChainItem: in_toto.SupplyChainItem{Name: name, ExpectedMaterials: mat, ExpectedProducts: prod}})
		l := attest.Link(rec, run.Step{Name: name, Command: cmd, Materials: source, Products: products})
		mb, err := attest.SignLink(ctx, l, f)
		if err != nil {
			return nil, err
		}
		if c.Links[seal.LinkName(name, id)], err = json.MarshalIndent(mb, "", "  "); err != nil {
			return nil, err
		}
		prev = name
	}
	mb := &in_toto.Metablock{Signed: layout}
	if err := signing.SignMetablock(ctx, mb, owner); err != nil {
		return nil, err
	}
	if c.Layout, err = json.MarshalIndent(mb, "", "  "); err != nil {
		return nil, err
	}
	if c.Owner, err = signing.NewVerifier(owner.Public()); err != nil {
		return nil, err
	}
	if c.OwnerPEM, err = signing.MarshalPublicKeyPEM(owner.Public()); err != nil {
		return nil, err
	}
	return c, nil
}

// WriteDir writes the chain as `in-toto verify` and `stepseal verify` read
// it: DIR/root.layout, DIR/owner.pub and DIR/links/*.link.
func (c *Chain) WriteDir(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "links"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "root.layout"), c.Layout, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pub"), c.OwnerPEM, 0o644); err != nil {
		return err
	}
	for n, d := range c.Links {
		if err := os.WriteFile(filepath.Join(dir, "links", n), d, 0o644); err != nil {
			return err
		}
	}
	return nil
}

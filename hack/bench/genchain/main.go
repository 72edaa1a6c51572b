// Command genchain writes a signed in-toto supply chain for verification
// benchmarks: DIR/root.layout (signed by a fresh owner key), DIR/owner.pub
// and DIR/links/ with one link per step of -artifacts materials and
// products each, in the shape of stepseal's generated layouts.
//
// With -verify it instead verifies such a directory with pkg/verify, the
// engine behind `stepseal verify`, exiting 0 only if it passes (the fallback
// hack/bench/verify.sh uses when the CLI cannot be built).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/verify"
	"github.com/stepseal/stepseal/pkg/verify/verifytest"
)

func main() {
	out := flag.String("out", "chain", "directory to write (or, with -verify, to verify)")
	steps := flag.Int("steps", 50, "layout steps")
	artifacts := flag.Int("artifacts", 1000, "materials and products per step")
	keyType := flag.String("key-type", "ed25519", "key type of owner and functionaries: ed25519, ecdsa or rsa")
	doVerify := flag.Bool("verify", false, "verify DIR instead of writing it")
	flag.Parse()
	var err error
	if *doVerify {
		err = verifyDir(*out)
	} else {
		err = generate(*out, *steps, *artifacts, signing.KeyType(*keyType))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genchain:", err)
		os.Exit(1)
	}
}

func generate(dir string, steps, artifacts int, kt signing.KeyType) error {
	c, err := verifytest.Generate(context.Background(), verifytest.Options{Steps: steps, Artifacts: artifacts, KeyType: kt})
	if err != nil {
		return err
	}
	if err := c.WriteDir(dir); err != nil {
		return err
	}
	// The declared output, for `stepseal verify --artifact` style checks.
	outputs, err := json.MarshalIndent(c.Outputs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "outputs.json"), outputs, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d steps x %d artifacts, run %s\n", dir, steps, artifacts, c.RunID)
	return nil
}

func verifyDir(dir string) error {
	layout, err := verify.ReadFile(filepath.Join(dir, "root.layout"))
	if err != nil {
		return err
	}
	owner, err := signing.LoadVerifier(filepath.Join(dir, "owner.pub"))
	if err != nil {
		return err
	}
	v, err := verify.Layout(context.Background(), layout, []signing.Verifier{owner}, verify.Dir(filepath.Join(dir, "links")), verify.Options{WithoutArtifactUnsafe: true})
	if v != nil && v.Passed {
		fmt.Println("PASSED")
	}
	return err
}

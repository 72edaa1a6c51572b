// Command catalog-bundle is what hack/release.sh runs to publish stepseal's
// Tekton catalog: it reads the ko-resolved Tasks and StepActions (files, or
// stdin), packs them into one Tekton bundle (pkg/catalog), pushes it by
// digest, signs it with --key (cosign's format) and then tags it, and
// prints the bundle's reference by digest.
//
//	catalog-bundle --ref REGISTRY/REPO:TAG --key cosign.key [FILE...]
//
// An encrypted key's password comes from COSIGN_PASSWORD. A registry on
// loopback is reached over plain HTTP, any other over verified TLS.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/stepseal/stepseal/pkg/catalog"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/signing"
)

func main() {
	ref := flag.String("ref", "", "where to push the bundle, REGISTRY/REPO:TAG")
	keyPath := flag.String("key", "", "private key to sign the bundle with (PEM or cosign-encrypted; password from COSIGN_PASSWORD)")
	flag.Parse()
	if err := run(context.Background(), *ref, *keyPath, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "catalog-bundle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, refStr, keyPath string, files []string) error {
	if refStr == "" || keyPath == "" {
		return fmt.Errorf("--ref and --key are required")
	}
	var stream []byte
	if len(files) == 0 {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		stream = b
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		stream = append(append(stream, "\n---\n"...), b...)
	}
	rs, err := catalog.Split(stream)
	if err != nil {
		return err
	}
	img, err := catalog.Bundle(rs)
	if err != nil {
		return err
	}
	key, err := signing.LoadPrivateKey(keyPath, signing.EnvOrPrompt)
	if err != nil {
		return err
	}
	var opts []oci.Option
	if r, err := oci.ParseReference(refStr, oci.WithInsecure()); err == nil && oci.IsLoopback(r.Context().RegistryStr()) {
		opts = append(opts, oci.WithInsecure())
	}
	c, err := oci.New(opts...)
	if err != nil {
		return err
	}
	ref, err := c.ParseReference(refStr)
	if err != nil {
		return err
	}
	d, err := catalog.Publish(ctx, c, img, ref, key)
	if err != nil {
		return err
	}
	for _, r := range rs {
		fmt.Fprintf(os.Stderr, "catalog-bundle: %s/%s\n", r.Kind, r.Name)
	}
	fmt.Println(d.String())
	return nil
}

// Command resign signs a link body with a key and writes it as
// <step>.<keyid8>.link: the tests use it to mount attacks by functionaries
// who hold real keys.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: resign KEY SIGNED.json LINKDIR STEP")
		os.Exit(2)
	}
	s, err := signing.LoadSigner(os.Args[1], nil)
	check(err)
	data, err := os.ReadFile(os.Args[2])
	check(err)
	var l in_toto.Link
	check(json.Unmarshal(data, &l))
	mb, err := attest.SignLink(context.Background(), l, s)
	check(err)
	id, _ := s.KeyID()
	check(mb.Dump(filepath.Join(os.Args[3], seal.LinkName(os.Args[4], id))))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

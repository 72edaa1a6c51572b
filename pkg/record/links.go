package record

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/seal"
	"github.com/stepseal/stepseal/pkg/signing"
)

// WriteLinks signs link once per signer and writes each Metablock to
// dir/<step>.<keyid[:8]>.link as `in-toto run` does (indented JSON, 0644),
// but atomically: a temporary file renamed into place, so a crash never
// leaves half a link.
func WriteLinks(ctx context.Context, dir string, link in_toto.Link, signers []signing.Signer) ([]string, error) {
	var paths []string
	for _, s := range signers {
		mb, err := attest.SignLink(ctx, link, s)
		if err != nil {
			return paths, err
		}
		data, err := json.MarshalIndent(mb, "", "  ")
		if err != nil {
			return paths, fmt.Errorf("link of step %s: %w", link.Name, err)
		}
		id, err := s.KeyID()
		if err != nil {
			return paths, err
		}
		p := filepath.Join(dir, seal.LinkName(link.Name, id))
		if err := signing.WriteFileAtomic(p, data, 0o644); err != nil {
			return paths, fmt.Errorf("link of step %s: %w", link.Name, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

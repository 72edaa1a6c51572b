package policy

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stepseal/stepseal/pkg/signing"
)

// Marshal encodes the policy as a JSON document with every platform key
// inlined as a PKIX PEM block, so the document stands alone: nothing outside
// it (a key file) can change what it means.
func Marshal(p *Policy) ([]byte, error) {
	d := Document{APIVersion: APIVersion, Kind: Kind, Metadata: Metadata{Name: p.Name}}
	if p.Version > 0 {
		v := p.Version
		d.Metadata.Version = &v
	}
	for _, pl := range p.Platforms {
		e := PlatformEntry{Name: pl.Name, Labels: pl.Labels}
		if err := e.SetPublicKey(pl.PublicKey); err != nil {
			return nil, err
		}
		d.Spec.Platforms = append(d.Spec.Platforms, e)
	}
	for _, r := range p.rules {
		ad := ArtifactRule{Match: r.pat.text, Encrypt: r.encrypt, Platforms: []string{}}
		for _, pi := range r.platforms {
			ad.Platforms = append(ad.Platforms, p.Platforms[pi].Name)
		}
		d.Spec.Artifacts = append(d.Spec.Artifacts, ad)
	}
	return d.Marshal()
}

// Sign inlines every platform key (Marshal) and returns the DSSE envelope,
// signed by every signer, as the JSON bytes to distribute. The policy must
// carry a positive version: clients refuse versions older than one they have
// seen.
func Sign(ctx context.Context, p *Policy, signers ...signing.Signer) ([]byte, error) {
	if p.Version < 1 {
		return nil, fmt.Errorf("%w: policy %q: metadata.version must be a positive integer before signing", ErrInvalid, p.Name)
	}
	payload, err := Marshal(p)
	if err != nil {
		return nil, err
	}
	env, err := signing.SignEnvelope(ctx, PayloadType, payload, signers...)
	if err != nil {
		return nil, fmt.Errorf("%w: policy %q: %w", ErrSignature, p.Name, err)
	}
	return json.MarshalIndent(env, "", "  ")
}

package signing

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// PayloadTypeInToto is the DSSE payload type of in-toto statements.
const PayloadTypeInToto = "application/vnd.in-toto+json"

// SignEnvelope wraps payload in a DSSE envelope signed by every signer.
func SignEnvelope(ctx context.Context, payloadType string, payload []byte, signers ...Signer) (*dsse.Envelope, error) {
	if len(signers) == 0 {
		return nil, fmt.Errorf("%w: no signer given", ErrKey)
	}
	ds := make([]dsse.Signer, len(signers))
	for i, s := range signers {
		ds[i] = s
	}
	es, err := dsse.NewEnvelopeSigner(ds...)
	if err != nil {
		return nil, err
	}
	return es.SignPayload(ctx, payloadType, payload)
}

// VerifyEnvelope checks that at least threshold distinct keys among verifiers
// signed env, and returns the key IDs that did.
func VerifyEnvelope(ctx context.Context, env *dsse.Envelope, threshold int, verifiers ...Verifier) ([]string, error) {
	if env == nil {
		return nil, fmt.Errorf("%w: no envelope", ErrSignature)
	}
	if len(verifiers) == 0 {
		return nil, fmt.Errorf("%w: no verification key given", ErrSignature)
	}
	if threshold < 1 {
		threshold = 1
	}
	dv := make([]dsse.Verifier, len(verifiers))
	for i, v := range verifiers {
		dv[i] = v
	}
	ev, err := dsse.NewMultiEnvelopeVerifier(threshold, dv...)
	if err != nil {
		return nil, err
	}
	accepted, err := ev.Verify(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("%w: DSSE envelope (%s): %w", ErrSignature, env.PayloadType, err)
	}
	ids := make([]string, 0, len(accepted))
	for _, a := range accepted {
		ids = append(ids, a.KeyID)
	}
	return ids, nil
}

// SignMetablock appends s's signature over the canonical JSON of mb.Signed,
// exactly as in-toto-golang's Metablock.Sign does, but with any Signer
// (encrypted key files, KMS).
func SignMetablock(ctx context.Context, mb *in_toto.Metablock, s Signer) error {
	payload, err := mb.GetSignableRepresentation()
	if err != nil {
		return err
	}
	sig, err := s.Sign(ctx, payload)
	if err != nil {
		return err
	}
	id, err := s.KeyID()
	if err != nil {
		return err
	}
	mb.Signatures = append(mb.Signatures, in_toto.Signature{KeyID: id, Sig: hex.EncodeToString(sig)})
	return nil
}

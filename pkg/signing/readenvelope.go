package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/stepseal/stepseal/pkg/reject"
)

// MaxEnvelopeSize caps an envelope ReadEnvelope and ParseEnvelope accept.
const MaxEnvelopeSize = 16 << 20

// ErrEnvelope: bytes that should be a signed DSSE envelope are not one
// (reject.ErrMalformed). Whether its signatures verify is VerifyEnvelope's
// question, not this one's.
var ErrEnvelope = reject.Sentinel(reject.ErrMalformed, "not a signed DSSE envelope")

// ReadEnvelope reads a signed DSSE envelope from a file (ParseEnvelope).
func ReadEnvelope(path string) (*dsse.Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxEnvelopeSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ParseEnvelope(data, path)
}

// ParseEnvelope decodes a signed DSSE envelope strictly: one JSON object of
// at most MaxEnvelopeSize bytes with the envelope's fields only, a payload
// type, a base64 payload and at least one signature. source names the bytes
// in errors, which are ErrEnvelope.
func ParseEnvelope(data []byte, source string) (*dsse.Envelope, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: "+format, append([]any{source, ErrEnvelope}, args...)...)
	}
	if len(data) > MaxEnvelopeSize {
		return nil, bad("larger than %d bytes", MaxEnvelopeSize)
	}
	var env dsse.Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, bad("%w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("data after the envelope")
	}
	switch {
	case env.PayloadType == "":
		return nil, bad("no payloadType")
	case env.Payload == "":
		return nil, bad("no payload")
	case len(env.Signatures) == 0:
		return nil, bad("no signature")
	}
	if _, err := env.DecodeB64Payload(); err != nil {
		return nil, bad("payload: %w", err)
	}
	for i, s := range env.Signatures {
		if s.Sig == "" {
			return nil, bad("signature %d is empty", i)
		}
	}
	return &env, nil
}

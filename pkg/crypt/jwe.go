package crypt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// ocicrypt's layer annotations.
const (
	annotationPrefix = "org.opencontainers.image.enc."
	annotationKeys   = annotationPrefix + "keys."
	annotationJWE    = annotationKeys + "jwe"
	annotationPubOpt = annotationPrefix + "pubopts"
	encryptedSuffix  = "+encrypted"
)

// What go-jose may parse: ocicrypt's list (cf. keywrap/jwe UnwrapKey).
var (
	keyAlgorithms     = []jose.KeyAlgorithm{jose.RSA_OAEP, jose.RSA_OAEP_256, jose.ECDH_ES_A128KW, jose.ECDH_ES_A192KW, jose.ECDH_ES_A256KW}
	contentEncryption = []jose.ContentEncryption{jose.A128CBC_HS256, jose.A192CBC_HS384, jose.A256CBC_HS512, jose.A128GCM, jose.A192GCM, jose.A256GCM}
)

// slot is one recipient entry of a JWE: what its headers say, and a
// single-recipient JWE that decrypts with this entry alone.
type slot struct {
	kid    string
	alg    string
	shape  string // "RSA-2048" (from the wrapped key's length), "EC-P-256" (from epk), or ""
	single string
}

// jweSlots splits ocicrypt's JWE annotation (comma-separated base64 JWE JSON
// serializations) into recipient entries.
func jweSlots(annotation string) ([]slot, error) {
	var out []slot
	for i, b64 := range strings.Split(annotation, ",") {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("JWE %d: base64: %w", i, err)
		}
		s, err := splitJWE(raw)
		if err != nil {
			return nil, fmt.Errorf("JWE %d: %w", i, err)
		}
		out = append(out, s...)
	}
	return out, nil
}

type rawRecipient struct {
	Header       map[string]json.RawMessage `json:"header,omitempty"`
	EncryptedKey string                     `json:"encrypted_key,omitempty"`
}

func splitJWE(raw []byte) ([]slot, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("not JWE JSON serialization: %w", err)
	}
	shared := map[string]json.RawMessage{}
	if p, ok := top["protected"]; ok {
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return nil, errors.New("protected header is not a string")
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil, fmt.Errorf("protected header: %w", err)
		}
		if err := json.Unmarshal(b, &shared); err != nil {
			return nil, fmt.Errorf("protected header: %w", err)
		}
	}
	if u, ok := top["unprotected"]; ok {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(u, &m); err != nil {
			return nil, fmt.Errorf("unprotected header: %w", err)
		}
		for k, v := range m {
			shared[k] = v
		}
	}
	var recips []rawRecipient
	if r, ok := top["recipients"]; ok {
		if err := json.Unmarshal(r, &recips); err != nil {
			return nil, fmt.Errorf("recipients: %w", err)
		}
		if len(recips) == 0 {
			return nil, errors.New("no recipients")
		}
	} else {
		var flat rawRecipient
		if err := json.Unmarshal(raw, &flat); err != nil {
			return nil, err
		}
		recips = []rawRecipient{flat}
	}
	out := make([]slot, len(recips))
	for i, r := range recips {
		h := map[string]json.RawMessage{}
		for k, v := range shared {
			h[k] = v
		}
		for k, v := range r.Header {
			h[k] = v
		}
		var s slot
		_ = json.Unmarshal(h["kid"], &s.kid)
		_ = json.Unmarshal(h["alg"], &s.alg)
		s.shape = shapeOf(s.alg, h["epk"], r.EncryptedKey)
		if _, multi := top["recipients"]; multi {
			one := map[string]json.RawMessage{}
			for k, v := range top {
				one[k] = v
			}
			b, err := json.Marshal([]rawRecipient{r})
			if err != nil {
				return nil, err
			}
			one["recipients"] = b
			if b, err = json.Marshal(one); err != nil {
				return nil, err
			}
			s.single = string(b)
		} else {
			s.single = string(raw)
		}
		out[i] = s
	}
	return out, nil
}

func shapeOf(alg string, epk json.RawMessage, encryptedKey string) string {
	switch {
	case strings.HasPrefix(alg, "RSA"):
		k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(encryptedKey, "="))
		if err != nil || len(k) == 0 {
			return ""
		}
		return fmt.Sprintf("RSA-%d", len(k)*8)
	case strings.HasPrefix(alg, "ECDH-ES"):
		var e struct {
			Crv string `json:"crv"`
		}
		if json.Unmarshal(epk, &e) != nil || e.Crv == "" {
			return ""
		}
		return "EC-" + e.Crv
	}
	return ""
}

// decryptSlot returns the plaintext (ocicrypt's private options) of one
// recipient entry if key opens it.
func decryptSlot(s slot, key any) ([]byte, error) {
	obj, err := jose.ParseEncrypted(s.single, keyAlgorithms, contentEncryption)
	if err != nil {
		return nil, err
	}
	_, _, plain, err := obj.DecryptMulti(key)
	return plain, err
}

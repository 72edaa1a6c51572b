package tlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Key is the log's signing key: a note signer and its verifier. The signer's
// name is the log's origin, the first line of every checkpoint.
type Key struct {
	Signer   note.Signer
	Verifier note.Verifier
}

// GenerateKey returns a new Ed25519 note key pair for a log named origin:
// the private key ("PRIVATE+KEY+<origin>+<hash>+<data>") and the verifier
// key ("<origin>+<hash>+<data>").
func GenerateKey(origin string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, origin)
}

// ParseKey reads a private note key and derives its verifier from it, so a
// log needs one secret only. Errors never include key material.
func ParseKey(skey string) (Key, error) {
	skey = strings.TrimSpace(skey)
	s, err := note.NewSigner(skey)
	if err != nil {
		return Key{}, errors.New("tlog: private key is not a note signer key")
	}
	// PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return Key{}, errors.New("tlog: private key is not a note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return Key{}, errors.New("tlog: private key is not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return Key{}, fmt.Errorf("tlog: verifier of %q: %w", s.Name(), err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Key{}, fmt.Errorf("tlog: verifier of %q: %w", s.Name(), err)
	}
	if v.KeyHash() != s.KeyHash() {
		return Key{}, fmt.Errorf("tlog: derived verifier of %q does not match the key hash", s.Name())
	}
	return Key{Signer: s, Verifier: v}, nil
}

// ParseVerifier reads a note verifier key ("<origin>+<hash>+<data>").
func ParseVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("tlog: bad verifier key: %w", err)
	}
	return v, nil
}

// WriteKeyFiles generates a key pair for origin and writes the private key
// to priv (mode 0600, refusing to overwrite) and the verifier key to pub.
func WriteKeyFiles(priv, pub, origin string) (Key, error) {
	skey, vkey, err := GenerateKey(origin)
	if err != nil {
		return Key{}, err
	}
	if err := os.MkdirAll(filepath.Dir(priv), 0o700); err != nil {
		return Key{}, err
	}
	f, err := os.OpenFile(priv, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Key{}, fmt.Errorf("tlog: private key file: %w", err)
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return Key{}, fmt.Errorf("tlog: write private key file %s: %w", priv, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return Key{}, err
	}
	if err := f.Close(); err != nil {
		return Key{}, err
	}
	if err := os.WriteFile(pub, []byte(vkey+"\n"), 0o644); err != nil {
		return Key{}, fmt.Errorf("tlog: write verifier key file: %w", err)
	}
	return ParseKey(skey)
}

// ReadKey reads a private key file written by WriteKeyFiles.
func ReadKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("tlog: private key file: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return Key{}, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// ReadVerifier reads a verifier key file written by WriteKeyFiles.
func ReadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlog: verifier key file: %w", err)
	}
	return ParseVerifier(string(b))
}

package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"golang.org/x/term"

	"github.com/stepseal/stepseal/internal/limited"
)

// PEM block types of cosign's encrypted private keys (cosign v2 writes the
// first; older releases wrote the second).
const (
	SigstorePrivateKeyPEMType = "ENCRYPTED SIGSTORE PRIVATE KEY"
	CosignPrivateKeyPEMType   = "ENCRYPTED COSIGN PRIVATE KEY"
)

// maxKeyFile bounds how much of a key file is read: keys are small, a huge
// file is a mistake or an attack.
const maxKeyFile = 1 << 20

// PassFunc returns the password for an encrypted key. confirm asks twice
// (when creating a key).
type PassFunc func(confirm bool) ([]byte, error)

// EnvOrPrompt reads the password from COSIGN_PASSWORD (cosign's convention),
// or prompts on the terminal. It fails rather than hang when there is no terminal.
func EnvOrPrompt(confirm bool) ([]byte, error) {
	if p, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
		return []byte(p), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("%w: key is encrypted: set COSIGN_PASSWORD or run on a terminal", ErrPassword)
	}
	fmt.Fprint(os.Stderr, "Enter password for private key: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Enter password for private key again: ")
		p2, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, p2) {
			return nil, fmt.Errorf("%w: passwords do not match", ErrPassword)
		}
	}
	return p, nil
}

// StaticPass returns a PassFunc that always answers p.
func StaticPass(p string) PassFunc { return func(bool) ([]byte, error) { return []byte(p), nil } }

// PasswordFile returns a PassFunc that reads the password from the file at
// path (one trailing newline dropped), only when a key turns out to be
// encrypted: a Secret mounted as files (cosign.password beside
// cosign.key) without the password passing through the environment.
func PasswordFile(path string) PassFunc {
	return func(bool) ([]byte, error) {
		b, err := limited.ReadFile(path, maxKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: password file: %w", ErrPassword, err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
}

func readKeyFile(path string) ([]byte, error) {
	data, err := limited.ReadFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return data, nil
}

// LoadSigner reads a private key file: PEM PKCS#8, PKCS#1 ("RSA PRIVATE KEY"),
// SEC 1 ("EC PRIVATE KEY"), or a cosign encrypted key, whose password pass supplies.
func LoadSigner(path string, pass PassFunc) (Signer, error) {
	key, err := LoadPrivateKey(path, pass)
	if err != nil {
		return nil, err
	}
	return NewSigner(key)
}

// LoadPrivateKey reads a private key file (see LoadSigner) as a
// crypto.Signer, for callers that sign in another scheme (cosign's).
func LoadPrivateKey(path string, pass PassFunc) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKeyPEM(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKeyPEM parses one private key PEM block (see LoadSigner).
func ParsePrivateKeyPEM(data []byte, pass PassFunc) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrKey)
	}
	der := block.Bytes
	switch block.Type {
	case SigstorePrivateKeyPEMType, CosignPrivateKeyPEMType:
		if pass == nil {
			return nil, fmt.Errorf("%w: key is encrypted and no password source was given", ErrPassword)
		}
		pw, err := pass(false)
		if err != nil {
			return nil, err
		}
		der, err = encrypted.Decrypt(block.Bytes, pw)
		if err != nil {
			return nil, fmt.Errorf("%w", ErrPassword)
		}
		return parsePKCS8(der)
	case "PRIVATE KEY":
		return parsePKCS8(der)
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		return k, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		return k, nil
	case "PUBLIC KEY":
		return nil, fmt.Errorf("%w: this is a public key, a private key is needed", ErrKey)
	}
	return nil, fmt.Errorf("%w: unsupported PEM block %q", ErrKey, block.Type)
}

func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: unsupported private key type %T", ErrKey, k)
}

// LoadVerifier reads a public key PEM file (PKIX). A private key file is
// accepted too when it is not encrypted; its public half is used.
func LoadVerifier(path string) (Verifier, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKeyPEM(data)
	if err != nil {
		if k, perr := ParsePrivateKeyPEM(data, nil); perr == nil {
			pub = k.Public()
		} else {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return NewVerifier(pub)
}

// ParsePublicKeyPEM parses a PKIX "PUBLIC KEY" PEM block.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrKey)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PEM block %q is not a PUBLIC KEY", ErrKey, block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	switch pub.(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("%w: unsupported public key type %T", ErrKey, pub)
}

// MarshalPrivateKeyPEM encodes a private key as PKCS#8 PEM, or, when
// password is non-nil, as a cosign encrypted key (scrypt + secretbox).
func MarshalPrivateKeyPEM(key crypto.Signer, password []byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if password == nil {
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	enc, err := encrypted.Encrypt(der, password)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: SigstorePrivateKeyPEMType, Bytes: enc}), nil
}

// MarshalPublicKeyPEM encodes a public key as PKIX PEM.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// WriteKeyPair writes DIR/NAME.key (0600) and DIR/NAME.pub, atomically: both
// files appear complete or not at all. It refuses to overwrite existing files.
func WriteKeyPair(dir, name string, key crypto.Signer, password []byte) (privPath, pubPath string, err error) {
	priv, err := MarshalPrivateKeyPEM(key, password)
	if err != nil {
		return "", "", err
	}
	pub, err := MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	privPath = filepath.Join(dir, name+".key")
	pubPath = filepath.Join(dir, name+".pub")
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists, not overwriting a key", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
	}
	if err := WriteFileAtomic(privPath, priv, 0o600); err != nil {
		return "", "", err
	}
	if err := WriteFileAtomic(pubPath, pub, 0o644); err != nil {
		os.Remove(privPath)
		return "", "", err
	}
	return privPath, pubPath, nil
}

// WriteFileAtomic writes data to a temporary file in the same directory with
// mode perm, syncs it and renames it into place, so readers never see a
// partial file and a crash leaves nothing half-written.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }

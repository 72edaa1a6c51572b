package signing

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPasswordFile: the password is the file's bytes without one trailing
// newline, read only when asked; a missing file is ErrPassword naming it.
func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cosign.password")
	if err := os.WriteFile(p, []byte("pw \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Generate(ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := MarshalPrivateKeyPEM(k, []byte("pw "))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKeyPEM(pemBytes, PasswordFile(p)); err != nil {
		t.Fatalf("encrypted key with the password file: %v", err)
	}
	missing := filepath.Join(dir, "absent")
	if _, err := ParsePrivateKeyPEM(pemBytes, PasswordFile(missing)); !errors.Is(err, ErrPassword) {
		t.Errorf("missing password file: %v, want ErrPassword", err)
	}
	plain, err := MarshalPrivateKeyPEM(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKeyPEM(plain, PasswordFile(missing)); err != nil {
		t.Errorf("an unencrypted key read the password file: %v", err)
	}
}

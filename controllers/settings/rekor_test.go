package settings

import (
	"errors"
	"strings"
	"testing"
)

// The "rekor" backend's keys: a write URL is required when it is listed,
// URLs must be http(s) without credentials, the trusted root a path, and
// it needs a store backend next to it, like "oci".
func TestRekorSettings(t *testing.T) {
	c, err := Parse(map[string]string{KeyBackends: "dir,rekor", KeyRekorURL: "https://rekor.example.com", KeyRekorTilesURL: "https://tiles.example.com/log/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RekorURL != "https://rekor.example.com" || c.RekorTilesURL != "https://tiles.example.com/log/" || c.RekorTrustedRoot != "/etc/stepseal/rekor/trusted_root.json" {
		t.Fatalf("config %+v", c)
	}
	for _, bad := range []struct {
		data map[string]string
		want string
	}{
		{map[string]string{KeyBackends: "dir,rekor"}, KeyRekorURL},
		{map[string]string{KeyBackends: "rekor", KeyRekorURL: "https://rekor.example.com"}, "needs a store backend"},
		{map[string]string{KeyBackends: "dir,rekor", KeyRekorURL: "ftp://rekor.example.com"}, KeyRekorURL},
		{map[string]string{KeyBackends: "dir,rekor", KeyRekorURL: "https://user:pw@rekor.example.com"}, KeyRekorURL},
		{map[string]string{KeyBackends: "dir,rekor", KeyRekorURL: "https://rekor.example.com", KeyRekorTrustedRoot: "trusted_root.json"}, KeyRekorTrustedRoot},
	} {
		_, err := Parse(bad.data)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want ErrInvalid naming %s", bad.data, err, bad.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("the error shows the credentials: %v", err)
		}
	}
}

package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrustStatusAndResolve runs `stepseal trust status` and `trust
// resolve` against a real tuf-on-ci repository served over loopback HTTP.
func TestTrustStatusAndResolve(t *testing.T) {
	base := filepath.Join(repo, "pkg", "trust", "testdata", "tuf-conformance", "tuf-on-ci-0.11")
	srv := httptest.NewServer(http.FileServer(http.Dir(base)))
	defer srv.Close()
	cache := t.TempDir()
	flags := []string{"--source", srv.URL + "/metadata", "--cache", cache}

	r := ss(t, append([]string{"trust", "status", "--all", "--root", filepath.Join(base, "initial_root.json"), "-o", "json"}, flags...)...)
	if r.code != 0 {
		t.Fatal(r)
	}
	var st struct {
		Status struct {
			Trusted bool `json:"trusted"`
			Roles   []struct {
				Role    string `json:"role"`
				Version int64  `json:"version"`
			} `json:"roles"`
		} `json:"status"`
		Changes struct {
			Updated bool `json:"updated"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err, r)
	}
	if !st.Status.Trusted || !st.Changes.Updated || len(st.Status.Roles) != 5 || st.Status.Roles[4].Role != "delegatedrole" {
		t.Fatalf("%+v", st)
	}

	// The second run uses the cache (no --root) and finds nothing new.
	r = ss(t, append([]string{"trust", "status", "--all"}, flags...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "no new metadata") || !strings.Contains(r.stdout, "delegatedrole") {
		t.Fatal(r)
	}
	// Without --all, delegated roles are loaded by lookups only.
	r = ss(t, append([]string{"trust", "status"}, flags...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "no new metadata") || strings.Contains(r.stdout, "delegatedrole") || !strings.Contains(r.stdout, "delegated roles: 0 of 1 loaded") {
		t.Fatal(r)
	}

	const sum = "45f337ee451b4c098d121d09cc224bacc7794503ac58a47a78cfe7ebefb7fab3"
	r = ss(t, append([]string{"trust", "resolve", "delegatedrole/artifact", "--sha256", sum, "--size", "34", "-o", "json"}, flags...)...)
	var res struct {
		Role     string   `json:"role"`
		Chain    []string `json:"chain"`
		SignedBy []string `json:"signedBy"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Role != "delegatedrole" || len(res.Chain) != 2 || len(res.SignedBy) != 1 {
		t.Fatal(r)
	}
	r = ss(t, append([]string{"trust", "resolve", "delegatedrole/artifact", "--sha256", strings.Repeat("0", 64), "--size", "34"}, flags...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "digest mismatch") || !strings.Contains(r.stderr, `"delegatedrole"`) {
		t.Fatal(r)
	}
	r = ss(t, append([]string{"trust", "resolve", "nowhere/x"}, flags...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "not listed") {
		t.Fatal(r)
	}
}

package testregistry

import (
	"net/http"
	"os"
	"testing"
)

func TestStartServesV2AndStops(t *testing.T) {
	var host string
	t.Run("running", func(t *testing.T) {
		s := StartServer(t)
		host = s.Host
		resp, err := http.Get("http://" + host + "/v2/_catalog")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v2/_catalog: %s", resp.Status)
		}
		if _, err := os.Stat(s.StorageDir); err != nil {
			t.Fatal(err)
		}
	})
	// The subtest's cleanup has killed the registry.
	if resp, err := http.Get("http://" + host + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("registry on %s still answers after cleanup", host)
	}
}

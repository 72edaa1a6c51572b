package s3test

import (
	"net/http"
	"testing"
)

func TestStart(t *testing.T) {
	s := Start(t)
	resp, err := http.Get(s.Endpoint + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Unsigned requests are refused: the gateway checks credentials.
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned GET /: %d, want 403", resp.StatusCode)
	}
}

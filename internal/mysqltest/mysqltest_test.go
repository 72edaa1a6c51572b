package mysqltest

import (
	"strings"
	"testing"
)

func TestStart(t *testing.T) {
	s := Start(t)
	dsn := s.NewDatabase(t)
	if !strings.Contains(dsn, s.Password) || !strings.HasSuffix(dsn, "/t1") {
		t.Fatalf("DSN %q", dsn)
	}
	out, err := s.Query("t1", "CREATE TABLE x (a INT); INSERT INTO x VALUES (7); SELECT a FROM x")
	if err != nil || out != "7" {
		t.Fatalf("query: %q, %v", out, err)
	}
}

// TestStopStart: a stopped server refuses connections; started again it
// has the same port and the data committed before the stop.
func TestStopStart(t *testing.T) {
	s := Start(t)
	s.NewDatabase(t)
	if _, err := s.Query("t1", "CREATE TABLE x (a INT); INSERT INTO x VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	port := s.Port
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Query("t1", "SELECT a FROM x"); err == nil {
		t.Fatal("a stopped server answered")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := s.Query("t1", "SELECT a FROM x")
	if err != nil || out != "7" || s.Port != port {
		t.Fatalf("after restart: %q, %v, port %d (was %d)", out, err, s.Port, port)
	}
}

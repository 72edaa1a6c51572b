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

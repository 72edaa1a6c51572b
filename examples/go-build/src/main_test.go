package main

import "testing"

func TestGreeting(t *testing.T) {
	if got := Greeting("tekton"); got != "hello, tekton" {
		t.Fatalf("Greeting = %q", got)
	}
}

package annotations

import (
	"testing"

	"github.com/stepseal/stepseal/pkg/logserver"
)

// The annotation the controller writes is the one log monitors read.
func TestLogCheckpointIsGossip(t *testing.T) {
	if LogCheckpoint != logserver.GossipAnnotation {
		t.Fatalf("LogCheckpoint %q, logserver.GossipAnnotation %q", LogCheckpoint, logserver.GossipAnnotation)
	}
}

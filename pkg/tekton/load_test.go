package tekton

import (
	"context"
	"testing"
)

func TestLoadExample(t *testing.T) {
	s, err := Load(context.Background(), "../../examples/go-build/pipeline.yaml", "../../examples/go-build/tasks")
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.Order()
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range o {
		t.Log(pt.Name, s.Workspaces(pt), len(s.Tasks[pt.Name].Steps))
	}
}

package catalog

import (
	"errors"
	"strings"
	"testing"
)

// FuzzSplit: any stream is either refused with ErrResource or split into
// 1 to MaxResources Tekton resources, unique by kind and name, none naming
// a ko:// image, that Bundle accepts.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: a}\nspec: {steps: [{name: s, image: r/x@sha256:00}]}\n"))
	f.Add([]byte("---\napiVersion: tekton.dev/v1beta1\nkind: StepAction\nmetadata:\n  name: b\n---\napiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: b}\n"))
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\n"))
	f.Add([]byte("kind: Task\napiVersion: tekton.dev/v1\nmetadata: {name: ko}\nspec: {image: \"ko://x\"}\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		rs, err := Split(stream)
		if err != nil {
			if !errors.Is(err, ErrResource) {
				t.Fatalf("error %v is not ErrResource", err)
			}
			return
		}
		if len(rs) == 0 || len(rs) > MaxResources {
			t.Fatalf("%d resources", len(rs))
		}
		seen := map[string]bool{}
		for _, r := range rs {
			k := strings.ToLower(r.Kind) + "/" + r.Name
			if seen[k] || r.Name == "" || !kinds[r.Kind] || strings.Contains(string(r.Data), "ko://") {
				t.Fatalf("resource %s accepted", k)
			}
			seen[k] = true
		}
		if _, err := Bundle(rs); err != nil {
			t.Fatalf("Bundle: %v", err)
		}
	})
}

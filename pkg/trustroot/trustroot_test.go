package trustroot

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestPaths(t *testing.T) {
	for _, tc := range []struct{ kind, in, want string }{
		{Layouts, "payments", "layouts/payments.layout"},
		{Layouts, "layouts/x/payments.layout", "layouts/x/payments.layout"},
		{Policies, "platforms", "policies/platforms.policy"},
		{Keys, "publisher", "keys/publisher.pub"},
		{Keys, "keys/team/alice.pub", "keys/team/alice.pub"},
	} {
		if got := PathOf(tc.kind, tc.in); got != tc.want {
			t.Errorf("PathOf(%s, %s) = %s, want %s", tc.kind, tc.in, got, tc.want)
		}
	}
	tag, err := name.NewTag("registry.example.com:5000/payments/api:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got := ImagePath(tag); got != "oci/registry.example.com:5000/payments/api:v1" {
		t.Errorf("ImagePath = %s", got)
	}
	tag, _ = name.NewTag("payments/api")
	if got := ImagePath(tag); got != "oci/index.docker.io/payments/api:latest" {
		t.Errorf("ImagePath of a short name = %s", got)
	}
}

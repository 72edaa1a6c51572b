package localrun_test

import (
	"os/exec"
	"strings"
	"testing"
)

// What the stepseal CLI must not link in: every start of it runs the init
// functions and maps the code of all it links. Tekton's reconciler packages
// (whose substitution functions the local runner uses, from a copy in
// internal/tekton) bring in the Kubernetes clientsets, trusted resources and,
// through them, the AWS, Azure, GCP and Vault KMS SDKs. KMS signing belongs
// to the controller, which imports the providers itself.
var heavy = []string{
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun",
	"github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun",
	"github.com/tektoncd/pipeline/pkg/trustedresources",
	"github.com/tektoncd/pipeline/pkg/client/",
	"github.com/sigstore/sigstore/pkg/signature/kms/aws",
	"github.com/sigstore/sigstore/pkg/signature/kms/azure",
	"github.com/sigstore/sigstore/pkg/signature/kms/gcp",
	"github.com/sigstore/sigstore/pkg/signature/kms/hashivault",
	"github.com/aws/aws-sdk-go-v2/service/kms",
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault",
	"cloud.google.com/go/kms",
	"github.com/hashicorp/vault/api",
	"k8s.io/client-go/kubernetes",
	"knative.dev/pkg/injection",
}

func TestCLIDoesNotLinkReconcilersOrKMS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to list dependencies with")
	}
	for _, pkg := range []string{"github.com/stepseal/stepseal/pkg/localrun", "github.com/stepseal/stepseal/images/stepseal"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed only %q", pkg, deps)
		}
		for _, d := range deps {
			for _, h := range heavy {
				if d == h || strings.HasPrefix(d, strings.TrimSuffix(h, "/")+"/") {
					t.Errorf("%s links %s (matches %s)", pkg, d, h)
				}
			}
		}
	}
}
